"""The gradient-strategy contract: how gradients pass through a solve."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import ClassVar

from torch import Tensor

from flowkit.interfaces.integrator import Integrator
from flowkit.solution import Solution
from flowkit.state import Dynamics, State

__all__ = ["GradientStrategy"]


class GradientStrategy(ABC):
    """Runs an integrator so that gradients reach ``y0`` and the parameters.

    Contract:
        * :meth:`solve` takes the integrator to use, the right-hand side
          ``func(t, y)``, the initial state and the 1-D tensor of times, and
          returns the integrator's :class:`~flowkit.solution.Solution` whose
          states carry gradients to ``y0``, to ``params`` and, where the strategy
          supports it, to ``t``.
        * ``params`` are the tensors ``func`` depends on that need gradients;
          by default the parameters of ``func`` when it is an ``nn.Module``.
          Strategies that do not differentiate through the solver's operations
          (adjoints) can only deliver gradients to these.
        * Statistics of a backward solve are recorded in ``stats.backward_*``
          once the backward pass has run.

    Capabilities (class attributes):
        requires: integrator capabilities (attribute names) that must be true
            for this strategy to work, e.g. ``("reversible",)``. The
            compatibility function reads it.
        constant_memory: whether memory stays constant in the number of steps.
    """

    requires: ClassVar[tuple[str, ...]] = ()
    constant_memory: ClassVar[bool] = False
    capability_names: ClassVar[tuple[str, ...]] = ("requires", "constant_memory")

    @abstractmethod
    def solve(
        self,
        integrator: Integrator,
        func: Dynamics,
        y0: State,
        t: Tensor,
        *,
        params: Sequence[Tensor] | None = None,
    ) -> Solution:
        """Solve ``dy/dt = func(t, y)`` with this strategy's gradients."""
