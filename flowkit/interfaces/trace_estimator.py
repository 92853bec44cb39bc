"""The trace-estimator contract: ``(f(t, x), tr(df/dx))`` for a batch."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import torch
from torch import Tensor, nn

__all__ = ["TraceEstimator"]


class TraceEstimator(ABC):
    """Computes a field's value and its divergence ``tr(df/dx)`` per sample.

    Contract:
        * :meth:`estimate` takes the field, a scalar time ``t``, a batch ``x`` of
          shape ``(batch, dim)`` and the probes of this solve, and returns
          ``(f(t, x), divergence)`` with the divergence of shape ``(batch,)``.
        * Under grad mode the results are differentiable with respect to ``x``
          and the field's parameters (second-order graphs are built); under
          ``torch.no_grad()`` it still works (building a local graph) and returns
          values without history.
        * A stochastic estimator draws its probes once per solve in
          :meth:`sample_probes` (an explicit "prepare" step, seedable through a
          ``torch.Generator``); the same probes are passed to every call of the
          solve, forward and backward, so an adaptive solver sees a
          deterministic right-hand side. A deterministic one returns ``None``.

    Capabilities (class attributes):
        stochastic: whether the estimate is random (unbiased, with variance).
        requires_divergence: whether the field must know its divergence in
            closed form (``has_divergence``).
    """

    stochastic: ClassVar[bool] = False
    requires_divergence: ClassVar[bool] = False
    capability_names: ClassVar[tuple[str, ...]] = ("stochastic", "requires_divergence")

    def sample_probes(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor | None:
        """Draw the probes for one solve over the batch ``x`` (``None`` if not stochastic)."""
        return None

    @abstractmethod
    def estimate(
        self, field: nn.Module, t: Tensor, x: Tensor, probes: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """Return ``(f(t, x), divergence estimate of shape (batch,))``."""
