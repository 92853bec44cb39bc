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
        * Optional context: a conditional field takes a keyword argument
          ``context`` (``forward(t, x, context=None)``; ``divergence`` too when
          it has one), a tensor of shape ``(batch, c)`` with one row per sample.
          Rows stay independent given their context: row ``b`` of the output
          depends on row ``b`` of ``x`` and of the context only. The context is
          a constant input of the solve, not differentiated with respect to
          ``x``. A conditional CNF binds it into the field
          (:class:`flowkit.dynamics.BoundContext`), so trace estimators and
          regularizers call ``field(t, x)`` as ever. Fields whose ``forward``
          has no ``context`` parameter keep working, unconditionally; giving
          them a context raises at the model's boundary.

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

    def divergence(self, t: Tensor, x: Tensor, context: Tensor | None = None) -> Tensor:
        """The exact divergence ``tr(df/dx)(t, x)`` (given ``context``), shape ``(batch,)``.

        Raises:
            FlowkitError: if the field does not know its divergence in closed
                form (``has_divergence`` is False).
        """
        raise FlowkitError(
            f"{type(self).__name__} has no closed-form divergence (has_divergence=False); "
            "use a trace estimator such as 'exact' or 'hutchinson' instead of 'analytic'."
        )
