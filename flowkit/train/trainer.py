"""The training loop: Adam on the configured objective, or a schedule of objectives.

The default objective, ``maximum_likelihood``, is the negative log-likelihood
plus weighted regularizers (with STEER), computed by :meth:`Trainer.compute_loss`
(through DistributedDataParallel when distributed). Any other registered
objective (``flow_matching``, ``rectified_flow``, ...) is built from the
registry and called as ``objective.loss(model, batch, generator=...)``; a
schedule runs stages of objectives one after the other, and a
``rectified_flow`` stage's teacher is a frozen copy of the model as the stage
begins. Validation and test NLLs are always solved by the evaluation
integrator, whatever the objective. A conditional run (``context``, see
:mod:`flowkit.train.context`) passes each batch's one-hot labels as the
context to the objective and to every evaluation.

:class:`Trainer` owns one run: the data, the model, the optimiser and schedule,
the sampler and every random generator, the logs and the checkpoints
(:class:`~flowkit.train.resume.CheckpointedRun`); evaluation and validation
are :class:`~flowkit.train.evaluation.EvaluatedRun`, the stages of objectives
:class:`~flowkit.train.stages.StagedRun`, the maximum-likelihood loss
:class:`~flowkit.train.likelihood.LikelihoodRun` and the batches
:class:`~flowkit.train.batches.BatchedRun`. Its
:meth:`~Trainer.step`, :meth:`~Trainer.validate` and :meth:`~Trainer.evaluate`
are public so that a benchmark can drive it step by step; :meth:`~Trainer.fit`
runs the whole loop (iterations or a time budget, validation at intervals,
early stopping, checkpoints, progress bar) and returns a :class:`TrainResult`.

References:
    Grathwohl et al. "FFJORD", ICLR 2019 (the model and the toy setting).
    Finlay et al. "How to train your neural ODE", ICML 2020 (regularizers).
    Ghosh et al. "STEER: Simple Temporal Regularization For Neural ODEs",
    NeurIPS 2020 (a random end time during training).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from flowkit.data import BatchSampler, DataSplits, load_dataset
from flowkit.errors import FlowkitError, NonFiniteStateError
from flowkit.train.batches import BatchedRun
from flowkit.train.config import TrainConfig, dump_toml
from flowkit.train.context import check_labelled_data
from flowkit.train.distributed import DistContext
from flowkit.train.evaluation import EvaluatedRun
from flowkit.train.likelihood import LikelihoodRun
from flowkit.train.logger import MetricsLogger, tensorboard_available
from flowkit.train.model import build_model, check_components, resolve_device, resolve_dtype
from flowkit.train.result import TrainResult
from flowkit.train.resume import CheckpointedRun
from flowkit.train.rundir import CONFIG_NAME, RESULTS_NAME, check_run_dir, default_run_dir
from flowkit.train.stages import StagedRun

__all__ = ["TrainResult", "Trainer", "TrainingDivergedError", "default_run_dir"]


class TrainingDivergedError(FlowkitError, FloatingPointError):
    """The training loss or the flow became NaN or Inf (data too large, a step too big)."""


_LARGE_DATA = 1e3
"""Largest absolute training value above which a diverging run blames the data's scale."""


class Trainer(CheckpointedRun, EvaluatedRun, StagedRun, LikelihoodRun, BatchedRun):
    """One training run of a CNF.

    Arguments:
        config: the run's configuration.
        run_dir: where to write (default ``config.out_dir`` or ``runs/<timestamp>``).
        resume: continue from ``run_dir/checkpoint.pt`` (the configuration must
            be the one the run was started with, apart from iterations,
            time budget and output switches).
        data: already loaded data (default: loaded from ``config``).
        context: this process's rank in a distributed run.
        write: write logs, checkpoints and results (off for a throw-away trainer).
        overwrite: a new run may write into a directory that already holds
            files (its previous run's files are overwritten).

    Raises:
        InvalidInputError: bad data, before any training.
        UnknownComponentError, ConfigError: unknown component names or options,
            or a bad device, before any data is loaded.
        RunDirError: a new run (``write`` and not ``resume``) in a directory
            that already holds files (see :func:`flowkit.train.train` for
            ``overwrite``).
        CheckpointError: on resume, a missing, corrupt or foreign checkpoint.
        ConfigError: on resume, a configuration that differs from the run's.
    """

    def __init__(
        self,
        config: TrainConfig,
        *,
        run_dir: str | Path | None = None,
        resume: bool = False,
        data: DataSplits | None = None,
        context: DistContext | None = None,
        write: bool = True,
        overwrite: bool = False,
    ) -> None:
        self.config = config
        self.ctx = context or DistContext()
        self.write = write and self.ctx.is_main
        if config.threads is not None:
            torch.set_num_threads(config.threads)
        self.device = resolve_device(config.device, rank=self.ctx.rank)
        self.dtype = resolve_dtype(config.dtype)
        self.run_dir = Path(run_dir or config.out_dir or default_run_dir())
        check_components(config)
        if self.write:
            check_run_dir(self.run_dir, resume=resume, overwrite=overwrite)

        self.data = data or load_dataset(
            config.data,
            seed=config.seed,
            n_train=config.n_train,
            n_val=config.n_val,
            n_test=config.n_test,
            val_fraction=config.val_fraction,
            test_fraction=config.test_fraction,
            standardize=config.standardize,
            dtype=self.dtype,
            device=self.device,
            labels=config.context,
        )
        self._check_data()
        check_labelled_data(config, self.data)

        torch.manual_seed(config.seed)  # the same initial weights on every rank
        self.model = build_model(config, self.data.dim, device=self.device, dtype=self.dtype)
        self.evaluation_model()  # the evaluation integrator's option values, checked now
        self._build_loss_module()
        self.optimizer = torch.optim.Adam(
            self.model.parameters(), lr=config.lr, weight_decay=config.weight_decay
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self._lr_factor)
        self.sampler = BatchSampler(len(self.data.train), config.batch_size, seed=config.seed + 1)
        # Probes (global torch RNG) differ per rank; STEER and dequantisation draws are
        # shared by all ranks, since they apply to the global batch.
        torch.manual_seed(config.seed + 2 + 1_000_003 * self.ctx.rank)
        self.steer_generator = torch.Generator().manual_seed(config.seed + 3)
        self.dequant_generator = torch.Generator().manual_seed(config.seed + 4)
        self.objective_generator = torch.Generator(device=self.device).manual_seed(config.seed + 6)
        self._plan_stages()
        self.reg_names = list(config.regularizers)
        self.reg_weights = torch.tensor(
            [config.regularizers[n] for n in self.reg_names], dtype=self.dtype, device=self.device
        )

        self.iteration = 0
        self.train_seconds = 0.0
        self.best_val_nll: float | None = None
        self.best_iteration: int | None = None
        self.bad_validations = 0
        self.best_state: dict[str, Tensor] | None = None
        self.last_loss = math.nan
        self.last_metrics: dict[str, Any] = {}
        if resume:
            self._resume()
        self._enter_stage(self._stage_of(self.iteration), teacher=self.teacher_state)
        self.logger: MetricsLogger | None = None
        if self.write:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            # without out_dir: reusing the saved file (--config) must not target this run
            (self.run_dir / CONFIG_NAME).write_text(dump_toml(config.replace(out_dir=None)))
            use_tb = config.tensorboard
            if use_tb is None:
                use_tb = tensorboard_available()
            self.logger = MetricsLogger(
                self.run_dir,
                self.columns,
                log_format=config.log_format,
                tensorboard=bool(use_tb),
                resume_from=self.iteration if resume else None,
            )

    # -- set-up --------------------------------------------------------------------------
    @property
    def columns(self) -> list[str]:
        """The metric columns of the log."""
        regs = [f"reg_{n}" for n in self.reg_names]
        return [
            "iteration",
            "train_seconds",
            "loss",
            "nll",
            *regs,
            "nfe",
            "backward_nfe",
            "lr",
            "t1",
            "grad_norm",
            "val_nll",
            *self._objective_columns(),
            "objective",
            "stage",
        ]

    def _lr_factor(self, step: int) -> float:
        c = self.config
        factor = 1.0
        if c.warmup and step < c.warmup:
            factor = (step + 1) / c.warmup
        if c.lr_schedule == "cosine":
            span = max(1, c.iterations - c.warmup)
            progress = min(1.0, max(0, step - c.warmup) / span)
            factor *= 0.5 * (1.0 + math.cos(math.pi * progress))
        return factor

    # -- one step ------------------------------------------------------------------------
    def step(self) -> dict[str, Any]:
        """One optimisation step on the next batch; returns its metrics."""
        start = time.perf_counter()
        self.model.train()
        stage = self._stage_of(self.iteration)
        if stage != self.stage_index:
            self._enter_stage(stage)
        t1: float | None = None
        if self.objective is None:
            t1 = self._end_time()
        x, context = self.next_batch_and_context()
        x = self.local_share(x)
        context = self.local_share(context) if context is not None else None
        self.optimizer.zero_grad(set_to_none=True)
        try:
            if self.objective is None:
                loss, metrics = self.compute_loss(x, t1, context)
            else:
                extra = {} if context is None else {"context": context}
                result = self.objective.loss(
                    self.model, x, generator=self.objective_generator, **extra
                )
                loss = result.loss
                metrics = {
                    k: torch.as_tensor(v, dtype=torch.float64) for k, v in result.metrics.items()
                }
            if not bool(torch.isfinite(loss)):
                raise self._diverged(f"the training loss became {loss.item()}")
            loss.backward()
        except NonFiniteStateError as exc:
            raise self._diverged(f"the flow became NaN or Inf ({exc})") from exc
        stats = getattr(self.model, "last_stats", None) if self.objective is None else None
        grad_norm = torch.nn.utils.clip_grad_norm_(
            self.model.parameters(), self.config.grad_clip or math.inf
        )
        lr = self.optimizer.param_groups[0]["lr"]
        self.optimizer.step()
        self.scheduler.step()
        self.iteration += 1
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.train_seconds += time.perf_counter() - start
        values = {"loss": loss.detach(), **metrics}
        if self.ctx.distributed:
            names = list(values)
            packed = torch.stack([values[n].to(torch.float64) for n in names])
            dist.all_reduce(packed)
            values = dict(zip(names, (packed / self.ctx.world_size).tolist(), strict=True))
        else:
            values = {k: float(v) for k, v in values.items()}
        self.last_loss = values["loss"]
        self.last_metrics = {
            "iteration": self.iteration,
            "train_seconds": round(self.train_seconds, 4),
            **values,
            "nfe": getattr(stats, "nfe", None),
            "backward_nfe": getattr(stats, "backward_nfe", None),
            "lr": lr,
            "t1": t1,
            "grad_norm": float(grad_norm),
            "objective": self.objective_name,
            "stage": self.stage_index + 1,
        }
        return self.last_metrics

    def _diverged(self, what: str) -> TrainingDivergedError:
        largest = float(self.data.train.abs().max())
        hint = "lower --lr, tighten the integrator tolerances, or add regularizers"
        if not largest <= _LARGE_DATA:
            hint = (
                f"the training data reach |x| = {largest:.3g}: standardise them "
                "(--standardize, the default for files) or rescale them to values of order "
                f"one; otherwise {hint}"
            )
        return TrainingDivergedError(f"At iteration {self.iteration + 1} {what}; {hint}.")

    # -- the loop ------------------------------------------------------------------------
    def _should_stop(self) -> str | None:
        c = self.config
        reason = None
        if self.iteration >= c.iterations:
            reason = "iterations"
        elif c.time_budget is not None and self.train_seconds >= c.time_budget:
            reason = "time_budget"
        elif c.patience is not None and self.bad_validations >= c.patience:
            reason = "early_stopping"
        if self.ctx.distributed and c.time_budget is not None:  # clocks differ across ranks
            flag = torch.tensor([0.0 if reason is None else 1.0], device=self.device)
            dist.broadcast(flag, 0)
            if flag.item() and reason is None:
                reason = "time_budget"
            elif not flag.item():
                reason = None
        return reason

    def fit(self, callback: Callable[[Trainer, dict[str, Any]], None] | None = None) -> TrainResult:
        """Train until the iterations, the time budget or the patience run out.

        Arguments:
            callback: called as ``callback(trainer, row)`` after each validation.

        Returns:
            The :class:`TrainResult` (also written to ``results.json``).
        """
        from tqdm.auto import tqdm

        c = self.config
        bar = tqdm(
            total=c.iterations,
            initial=self.iteration,
            disable=not (c.progress and self.ctx.is_main),
            dynamic_ncols=True,
            unit="it",
        )
        reason = self._should_stop()
        try:
            while reason is None:
                row = self.step()
                if self.iteration % c.val_every == 0:
                    row["val_nll"] = self.validate()
                    if callback is not None:
                        callback(self, row)
                bar.update(1)
                bar.set_postfix(
                    loss=f"{row['loss']:.4f}",
                    nfe=row["nfe"],
                    val=f"{self.best_val_nll:.4f}" if self.best_val_nll is not None else "-",
                    refresh=False,
                )
                if self.logger is not None:
                    self.logger.log(row)
                reason = self._should_stop()
                if self.iteration % c.checkpoint_every == 0 or reason is not None:
                    self.save()
        finally:
            bar.close()
            if self.logger is not None:
                self.logger.close()
        return self.finish(reason or "iterations")

    def finish(self, reason: str) -> TrainResult:
        """Test the final model and write ``results.json``."""
        model = self.final_model()
        test_nll = self.evaluate(
            self.data.test, model=model, context=self.split_context("test", self.data.test)
        )
        result = TrainResult(
            run_dir=str(self.run_dir),
            iterations=self.iteration,
            stop_reason=reason,
            train_seconds=self.train_seconds,
            best_val_nll=self.best_val_nll,
            best_iteration=self.best_iteration,
            test_nll=test_nll,
            test_nll_data=self.data.nll_in_data_units(test_nll),
            test_bits_per_dim=self.data.bits_per_dim(test_nll),
            final_loss=self.last_loss,
            conditional=self.config.context,
        )
        if self.write:
            (self.run_dir / RESULTS_NAME).write_text(json.dumps(asdict(result), indent=2) + "\n")
        return result
