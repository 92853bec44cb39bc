"""The maximum-likelihood loss of a training run: NLL plus weighted regularizers, with STEER.

:class:`LikelihoodRun` is the part of :class:`~flowkit.train.Trainer` that
computes the default objective itself (rather than through an objective
plugin), so that a distributed run sees one forward call of
DistributedDataParallel per step (:class:`LossModule`): the mean negative
log-likelihood of a batch (given its context) plus the weighted means of the
configured regularizers, integrated to an end time that STEER draws at random
around ``t1``.

References:
    Finlay et al. "How to train your neural ODE", ICML 2020 (regularizers).
    Ghosh et al. "STEER: Simple Temporal Regularization For Neural ODEs",
    NeurIPS 2020 (a random end time during training).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from flowkit.train.config import TrainConfig
from flowkit.train.distributed import DistContext

__all__ = ["LikelihoodRun", "LossModule"]


class LossModule(nn.Module):
    """Wraps the CNF so DistributedDataParallel sees one forward call per step."""

    def __init__(self, cnf: nn.Module) -> None:
        super().__init__()
        self.cnf = cnf

    def forward(
        self, x: Tensor, t1: float | None, context: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """Per-sample log-likelihoods and regularizer values of ``x`` at end time ``t1``."""
        return self.cnf.log_prob_and_regularization(  # type: ignore[no-any-return]
            x, t1=t1, context=context
        )


class LikelihoodRun:
    """The maximum-likelihood loss (mixed into :class:`~flowkit.train.Trainer`).

    The trainer provides the attributes annotated below and calls
    :meth:`_build_loss_module` once its model is built.
    """

    config: TrainConfig
    ctx: DistContext
    device: torch.device
    model: nn.Module
    loss_module: nn.Module
    steer_generator: torch.Generator
    reg_names: list[str]
    reg_weights: Tensor

    def _build_loss_module(self) -> None:
        """Wrap the model in :class:`LossModule`, and that in DistributedDataParallel
        when the run is distributed."""
        self.loss_module = LossModule(self.model)
        if self.ctx.distributed:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.loss_module = DistributedDataParallel(self.loss_module, device_ids=ids)

    def _end_time(self) -> float:
        """The end time of this step: ``t1``, or with STEER uniform in ``t1 ± steer``."""
        c = self.config
        if c.steer <= 0:
            return c.t1
        u = float(torch.rand((), generator=self.steer_generator, dtype=torch.float64))
        return c.t1 + c.steer * (2.0 * u - 1.0)

    def compute_loss(
        self, x: Tensor, t1: float | None = None, context: Tensor | None = None
    ) -> tuple[Tensor, dict[str, Any]]:
        """Loss of a local batch: mean NLL (given ``context``) plus the weighted mean regularizers.

        Returns:
            ``(loss, metrics)`` with the NLL and each regularizer's mean.
        """
        logp, reg = self.loss_module(x, t1, context)
        nll = -logp.mean()
        loss = nll
        metrics: dict[str, Any] = {"nll": nll.detach()}
        if self.reg_names:
            means = reg.mean(dim=0)
            loss = loss + (self.reg_weights * means).sum()
            for name, value in zip(self.reg_names, means.detach(), strict=True):
                metrics[f"reg_{name}"] = value
        return loss, metrics
