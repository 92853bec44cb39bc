"""Evaluating a training run: NLL under the evaluation solver, validation, the reported model.

:class:`EvaluatedRun` is the part of :class:`~flowkit.train.Trainer` that
measures: the model solved by the evaluation integrator (so reported NLLs do
not profit from a loose training tolerance), the mean NLL of a split on its
own random stream, the validation that keeps the best weights for early
stopping, and the model that is finally reported.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
import torch.distributed as dist
from torch import Tensor, nn

from flowkit.data import DataSplits
from flowkit.train.config import TrainConfig
from flowkit.train.distributed import DistContext
from flowkit.train.model import build_eval_model

__all__ = ["EvaluatedRun"]


class EvaluatedRun:
    """Evaluation and validation (mixed into :class:`~flowkit.train.Trainer`).

    The trainer provides the attributes annotated below.
    """

    config: TrainConfig
    ctx: DistContext
    device: torch.device
    data: DataSplits
    model: nn.Module
    iteration: int
    best_val_nll: float | None
    best_iteration: int | None
    bad_validations: int
    best_state: dict[str, Tensor] | None
    split_context: Callable[..., Tensor | None]

    def evaluation_model(self, model: nn.Module | None = None) -> nn.Module:
        """``model`` (default: the trained one) solved by the evaluation integrator.

        The returned CNF shares the field (and so the weights) of ``model`` and
        its trace estimator, but integrates with ``eval_integrator`` and
        ``eval_integrator_options`` (dopri5 at 1e-5 by default) and without
        regularizers, so reported NLLs and plots do not profit from a loose
        training tolerance or a few fixed steps.

        Raises:
            UnknownComponentError, ConfigError: an unknown evaluation integrator or option.
        """
        model = model or self.model
        return build_eval_model(model, self.config)

    @torch.no_grad()
    def evaluate(
        self, x: Tensor, *, model: nn.Module | None = None, context: Tensor | None = None
    ) -> float:
        """Mean NLL (model space, nats) of ``x`` at the configured end time.

        With a ``context`` (one row per row of ``x``; a conditional run) it is
        the conditional NLL, ``-mean log p(x | context)``.

        The model is solved by the evaluation integrator (see
        :meth:`evaluation_model`). The work is split across ranks and in chunks
        of ``eval_batch_size``. Evaluation runs on its own random stream (fixed
        probes for a stochastic trace), so it neither perturbs nor depends on
        the training stream.
        """
        model = self.evaluation_model(model)
        model.eval()
        share = x[self.ctx.rank :: self.ctx.world_size] if self.ctx.distributed else x
        size = self.config.eval_batch_size
        if context is not None and self.ctx.distributed:
            context = context[self.ctx.rank :: self.ctx.world_size]
        contexts = context.split(size) if context is not None else [None] * len(share.split(size))
        total = torch.zeros((), dtype=torch.float64, device=self.device)
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            torch.manual_seed(self.config.seed + 5)
            for chunk, chunk_context in zip(share.split(size), contexts, strict=True):
                total += -model.log_prob(chunk, chunk_context).to(torch.float64).sum()
        if self.ctx.distributed:
            dist.all_reduce(total)
        return float(total) / len(x)

    def validate(self) -> float:
        """Validation NLL; updates the best model and the early-stopping counter."""
        val = self.data.val
        context = self.split_context("val", val)
        if self.config.val_size is not None:
            val = val[: self.config.val_size]
            context = context[: self.config.val_size] if context is not None else None
        nll = self.evaluate(val, context=context)
        if self.best_val_nll is None or nll < self.best_val_nll:
            self.best_val_nll = nll
            self.best_iteration = self.iteration
            self.bad_validations = 0
            self.best_state = copy.deepcopy(self.model.state_dict())
        else:
            self.bad_validations += 1
        return nll

    def final_model(self) -> nn.Module:
        """The model to report: the best validated weights, or the last ones."""
        if self.best_state is None:
            return self.model
        model = copy.deepcopy(self.model)
        model.load_state_dict(self.best_state)
        return model
