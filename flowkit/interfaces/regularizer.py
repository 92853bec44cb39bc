"""The regularizer contract: a per-sample rate integrated along the CNF path."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import torch
from torch import Tensor, nn

__all__ = ["Regularizer"]


class Regularizer(ABC):
    """A training penalty ``integral r(t, x(t)) dt`` carried as an extra state.

    Contract:
        * :meth:`rate` returns the integrand per sample, shape ``(batch,)``,
          given the field, ``t``, ``x`` and the already computed ``dx = f(t, x)``
          (which carries the graph to ``x`` when a Jacobian term is needed).
        * A stochastic regularizer draws its probes once per solve in
          :meth:`sample_probes`, like a trace estimator.

    Capabilities (class attributes):
        stochastic: whether the rate is a random estimate.
    """

    stochastic: ClassVar[bool] = False
    capability_names: ClassVar[tuple[str, ...]] = ("stochastic",)

    def sample_probes(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor | None:
        """Draw the probes for one solve (``None`` if not stochastic)."""
        return None

    @abstractmethod
    def rate(
        self, field: nn.Module, t: Tensor, x: Tensor, dx: Tensor, probes: Tensor | None = None
    ) -> Tensor:
        """The integrand of the penalty for each sample, shape ``(batch,)``."""
