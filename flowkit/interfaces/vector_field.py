"""The vector-field contract: an ``nn.Module`` computing ``f(t, x)``."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

from torch import Tensor, nn

from flowkit.errors import FlowkitError

__all__ = ["VectorField"]


class VectorField(nn.Module, ABC):
    """A time-dependent vector field ``f(t, x)`` on batches of points.

    Contract:
        * ``forward(t, x)`` takes a scalar time ``t`` (a 0-dim tensor) and a
          batch ``x`` of shape ``(batch, dim)`` and returns a tensor of the same
          shape and dtype.
        * Rows are independent: row ``b`` of the output depends on row ``b`` of
          the input only. Trace estimators rely on this to compute all
          divergences of a batch with one vector-Jacobian product per probe.
        * A field that knows its divergence ``tr(df/dx)`` in closed form sets
          ``has_divergence = True`` and implements :meth:`divergence`, returning
          shape ``(batch,)``.

    Capabilities (class attributes):
        has_divergence: whether :meth:`divergence` is available.

    Any ``nn.Module`` with ``forward(t, x)`` is accepted wherever a field is
    expected; subclassing is how a field declares capabilities.
    """

    has_divergence: ClassVar[bool] = False
    capability_names: ClassVar[tuple[str, ...]] = ("has_divergence",)

    @abstractmethod
    def forward(self, t: Tensor, x: Tensor) -> Tensor:
        """Evaluate ``f(t, x)`` for a batch ``x`` of shape ``(batch, dim)``."""

    def divergence(self, t: Tensor, x: Tensor) -> Tensor:
        """The exact divergence ``tr(df/dx)(t, x)``, shape ``(batch,)``.

        Raises:
            FlowkitError: if the field does not know its divergence in closed
                form (``has_divergence`` is False).
        """
        raise FlowkitError(
            f"{type(self).__name__} has no closed-form divergence (has_divergence=False); "
            "use a trace estimator such as 'exact' or 'hutchinson' instead of 'analytic'."
        )
