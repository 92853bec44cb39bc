"""Evaluating a training run: NLL under the evaluation solver, validation, the reported model.

:class:`EvaluatedRun` is the part of :class:`~flowkit.train.Trainer` that
measures: the model solved by the evaluation integrator (so reported NLLs do
not profit from a loose training tolerance), the mean NLL of a split on its
own random stream, the validation that keeps the best weights for early
stopping, and the model that is finally reported.
"""

from __future__ import annotations

import copy

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
    def evaluate(self, x: Tensor, *, model: nn.Module | None = None) -> float:
        """Mean NLL (model space, nats) of ``x`` at the configured end time.

        The model is solved by the evaluation integrator (see
        :meth:`evaluation_model`). The work is split across ranks and in chunks
        of ``eval_batch_size``. Evaluation runs on its own random stream (fixed
        probes for a stochastic trace), so it neither perturbs nor depends on
        the training stream.
        """
        model = self.evaluation_model(model)
        model.eval()
        share = x[self.ctx.rank :: self.ctx.world_size] if self.ctx.distributed else x
        total = torch.zeros((), dtype=torch.float64, device=self.device)
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            torch.manual_seed(self.config.seed + 5)
            for chunk in share.split(self.config.eval_batch_size):
                total += -model.log_prob(chunk).to(torch.float64).sum()
        if self.ctx.distributed:
            dist.all_reduce(total)
        return float(total) / len(x)

    def validate(self) -> float:
        """Validation NLL; updates the best model and the early-stopping counter."""
        val = self.data.val
        if self.config.val_size is not None:
            val = val[: self.config.val_size]
        nll = self.evaluate(val)
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
