"""Built-in gradient strategies: how gradients pass through a solve."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor

from flowkit.hookspecs import Register, hookimpl
from flowkit.interfaces import GradientStrategy, Integrator
from flowkit.solution import Solution
from flowkit.state import Dynamics, State

__all__ = ["Backprop", "flowkit_register_gradient_strategies"]


class Backprop(GradientStrategy):
    """Differentiate through the solver's operations (discretise-then-optimise).

    The gradient is exact for the computed solution. Memory grows linearly with
    the number of steps, since every step's graph is kept; prefer ``adjoint``,
    ``checkpoint`` or ``reversible`` for long solves.
    """

    def solve(
        self,
        integrator: Integrator,
        func: Dynamics,
        y0: State,
        t: Tensor,
        *,
        params: Sequence[Tensor] | None = None,
    ) -> Solution:
        """Run the integrator with autograd recording every operation."""
        return integrator.integrate(func, y0, t)


@hookimpl
def flowkit_register_gradient_strategies(register: Register) -> None:
    """Register the built-in gradient strategies."""
    register("backprop", Backprop, aliases=("direct", "discretise_then_optimise"))
