"""Measuring an integrator's order: from its error at fixed steps, and from its cost.

One measurement, used by the conformance kit and by the test suite alike.

*Order at fixed steps* (:func:`measure_order`): the error on ``linear_skew`` at
``n``, ``2n`` and ``4n`` equal steps, with ``n`` doubled from 4 until the error
falls below 1e-3 or the step resolves the fastest rate ``r`` of the solution
(``r h <= 1/16``): in either case the method is in its asymptotic range, where
the next term of the error expansion, relatively ``O(r h)``, moves the slope
by a few hundredths, far less than the half order that separates the declared
order from the next lower one (:func:`order_is_supported`). Adaptive methods
are pinned to the step (``first_step = max_step = h`` and tolerances so loose
that every step is accepted), which measures the propagated solution's order.

*Order from the cost* (:func:`measure_tolerance_response`): an adaptive method is
run at two tolerances, ``tol`` and ``tol / K**p`` for its declared order ``p``.
A controller keeps each step's estimated local error near the tolerance. The
estimate is the local error of a companion of order ``q`` (``q = p - 1`` with
local extrapolation, ``q = p`` without), of size ``C h**(q + 1)``, so

* the step is ``h ~ tol**(1 / (q + 1))`` and the number of function
  evaluations grows like ``tol**(-1 / p)`` (or ``tol**(-1 / (p + 1))``);
* the global error, about the number of steps times the local error of the
  propagated order-``p`` solution, ``h**-1 * h**(p + 1)``, falls like ``tol``
  (or ``tol**(p / (p + 1))``).

The two exponents, fitted between the two tolerances, are checked one-sidedly:

* ``error exponent >= 1/2`` (:data:`MIN_ERROR_EXPONENT`): the smallest
  ``p / (p + 1)`` for any ``p >= 1``; a method whose error does not follow its
  tolerance (exponent near 0) fails.
* ``cost exponent <= (1/p + 1/(p - 1)) / 2`` (:func:`max_cost_exponent`): the
  midpoint between the declared order and the next lower one, so a method that
  needs the work of an order ``p - 1`` method (exponent ``1/(p - 1)``) fails; a
  method cheaper than declared (a higher order on this problem, e.g. a method
  nearly satisfying the next order's conditions on a linear field) passes.
  For ``p = 1`` the lower neighbour is "no order" and the bound is 1.5.

Together they leave no way through for a method that does not have its
declared order: if its error follows the tolerance, its cost shows its order.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from flowkit.state import State, as_tuple
from flowkit.testing import problems
from flowkit.testing.tolerances import roundoff

__all__ = [
    "COST_RATIO",
    "LOOSE_TOLERANCE",
    "MIN_ERROR_EXPONENT",
    "RESOLVED_RATE_STEP",
    "OrderMeasurement",
    "ToleranceResponse",
    "CountedDynamics",
    "max_cost_exponent",
    "measure_order",
    "measure_tolerance_response",
    "order_is_supported",
    "pinned_step_options",
]

LOOSE_TOLERANCE = 1e-4
"""The looser of the two tolerances of :func:`measure_tolerance_response`."""

COST_RATIO = 4.0
"""``K``: the tighter tolerance is ``LOOSE_TOLERANCE / K**p``, so a method of the
declared order ``p`` spends about ``K`` times the evaluations (cheap for any
order), while one of order ``p - 1`` spends ``K**(p / (p - 1))`` times."""

MIN_ERROR_EXPONENT = 0.5
"""``min over p >= 1 of p / (p + 1)``: how fast a tolerance-controlled global error falls."""

RESOLVED_RATE_STEP = 1.0 / 16.0
"""``r h`` at which a step resolves a solution of rate ``r`` (see the module doc)."""

_TIGHTEST_TOLERANCE = 1e-12
"""Tolerances stop here: below it float64 round-off, not the method, sets the error."""


def max_cost_exponent(order: int) -> float:
    """The largest admissible ``log(nfe ratio) / log(tolerance ratio)`` for ``order``."""
    if order <= 1:
        return 1.5
    return (1.0 / order + 1.0 / (order - 1)) / 2.0


def order_is_supported(slope: float, order: int) -> bool:
    """Whether a measured fixed-step slope supports the declared ``order``.

    One-sided: the slope must be nearer ``order`` than ``order - 1`` (at least
    ``order - 1/2``). A slope above the order means the method is more
    accurate than declared on the problem (e.g. a Runge-Kutta method that nearly
    meets the next order's conditions for linear fields), which is no defect.
    """
    return slope >= order - 0.5


class CountedDynamics:
    """Dynamics that count their own evaluations (the kit never trusts ``stats``)."""

    def __init__(self, func: Callable[[torch.Tensor, State], State]) -> None:
        self.func = func
        self.calls = 0

    def __call__(self, t: torch.Tensor, y: State) -> State:
        self.calls += 1
        return self.func(t, y)


def _max_error(a: State, b: State) -> float:
    pairs = zip(as_tuple(a), as_tuple(b), strict=True)
    return max(float((x.detach() - y.detach()).abs().max()) for x, y in pairs)


def pinned_step_options(
    capabilities: dict[str, Any],
    accepted: set[str] | None,
    step: float,
    n_steps: int | None = None,
) -> dict[str, Any] | None:
    """Options making an integrator take steps of ``step`` (None if it cannot).

    Fixed-step: ``step_size`` (or ``n_steps``, when given and that is all it
    takes). Adaptive: ``first_step = max_step = step`` and tolerances of 1e3 so
    that every step is accepted, when it declares these options.
    """
    takes = (lambda name: True) if accepted is None else (lambda name: name in accepted)
    if capabilities["adaptive"]:
        # Only when the options are declared: these are not part of every adaptive contract.
        if accepted is not None and {"first_step", "max_step", "rtol", "atol"} <= accepted:
            return {"first_step": step, "max_step": step, "rtol": 1e3, "atol": 1e3}
        return None
    if takes("step_size"):
        return {"step_size": step}
    if n_steps is not None and takes("n_steps"):
        return {"n_steps": n_steps}
    return None


@dataclass(frozen=True)
class OrderMeasurement:
    """Errors at ``steps`` equal steps over the span, and the fitted order."""

    steps: tuple[int, ...]
    errors: tuple[float, ...]
    slope: float
    at_roundoff: bool
    """True when the finest error is within round-off: the slope means nothing."""

    def describe(self) -> str:
        """``measured order 3.98 (errors ... at [...] steps)``."""
        errors = ", ".join(f"{e:.2e}" for e in self.errors)
        return f"measured order {self.slope:.2f} (errors {errors} at {list(self.steps)} steps)"


def measure_order(
    build: Callable[[dict[str, Any]], Any],
    capabilities: dict[str, Any],
    accepted: set[str] | None,
) -> OrderMeasurement | None:
    """The order of the solution an integrator propagates, at fixed steps.

    Arguments:
        build: makes the integrator from options.
        capabilities, accepted: its declared capabilities and option names
            (``None``: any).

    Returns ``None`` when the integrator offers no way to fix its step.
    """
    problem = problems.linear_skew(dim=3, batch=2)
    span = problem.t1 - problem.t0
    exact = problem.exact(problem.t1)

    def error_at(n: int) -> float | None:
        options = pinned_step_options(capabilities, accepted, span / n, n)
        if options is None:
            return None
        final = build(options).integrate(problem.func, problem.y0, problem.times(2)).final
        return max(_max_error(final, exact), 1e-300)

    n = 4
    first = error_at(n)
    if first is None:
        return None
    while first > 1e-3 and problem.rate * span / n > RESOLVED_RATE_STEP and n < 4096:
        n *= 2
        first = error_at(n)  # type: ignore[assignment]
    counts = (n, 2 * n, 4 * n)
    errors = (first, error_at(2 * n), error_at(4 * n))
    slope = math.log(errors[0] / errors[-1]) / math.log(counts[-1] / counts[0])  # type: ignore[operator]
    floor = roundoff(torch.float64, operations=100 * counts[-1]).atol
    return OrderMeasurement(counts, errors, slope, at_roundoff=errors[-1] < floor)  # type: ignore[arg-type]


@dataclass(frozen=True)
class ToleranceResponse:
    """Errors and counted evaluations at two tolerances, and their exponents."""

    tolerances: tuple[float, float]
    evaluations: tuple[int, int]
    errors: tuple[float, float]
    order: int
    error_floor: float
    """Round-off level: an error below it at the tight tolerance proves nothing."""

    @property
    def error_exponent(self) -> float:
        """``log(error ratio) / log(tolerance ratio)``: 1 when error follows tolerance."""
        ratio = self.tolerances[0] / self.tolerances[1]
        tight = max(self.errors[1], 1e-300)
        return math.log(max(self.errors[0], 1e-300) / tight) / math.log(ratio)

    @property
    def cost_exponent(self) -> float:
        """``log(evaluation ratio) / log(tolerance ratio)``: ``1/p`` for order ``p``."""
        ratio = self.tolerances[0] / self.tolerances[1]
        return math.log(self.evaluations[1] / self.evaluations[0]) / math.log(ratio)

    @property
    def error_follows_tolerance(self) -> bool:
        """The error falls at least like ``tol**(1/2)`` (or reaches round-off)."""
        return self.errors[1] <= self.error_floor or self.error_exponent >= MIN_ERROR_EXPONENT

    @property
    def cost_follows_order(self) -> bool:
        """The evaluations grow no faster than the declared order allows."""
        return self.cost_exponent <= max_cost_exponent(self.order)

    def describe(self) -> str:
        """Both measurements in one line."""
        tols = ", ".join(f"{t:.1e}" for t in self.tolerances)
        errors = ", ".join(f"{e:.2e}" for e in self.errors)
        return (
            f"at tolerances {tols}: errors {errors} (exponent {self.error_exponent:.2f}, "
            f"at least {MIN_ERROR_EXPONENT} required), function evaluations "
            f"{self.evaluations[0]}, {self.evaluations[1]} (exponent {self.cost_exponent:.3f}, "
            f"at most {max_cost_exponent(self.order):.3f} for the declared order {self.order})"
        )


def measure_tolerance_response(
    build: Callable[[dict[str, Any]], Any], order: int
) -> ToleranceResponse:
    """Run an adaptive integrator on ``linear_skew`` at two tolerances (see the module doc).

    Arguments:
        build: makes the integrator from options (``rtol`` and ``atol`` are given).
        order: the declared order ``p``.
    """
    problem = problems.linear_skew(dim=3, batch=2)
    exact = problem.exact(problem.t1)
    tight = max(LOOSE_TOLERANCE / COST_RATIO ** max(order, 1), _TIGHTEST_TOLERANCE)
    evaluations, errors = [], []
    for tol in (LOOSE_TOLERANCE, tight):
        counted = CountedDynamics(problem.func)
        solver = build({"rtol": tol, "atol": tol})
        final = solver.integrate(counted, problem.y0, problem.times(2)).final
        evaluations.append(max(counted.calls, 1))
        errors.append(_max_error(final, exact))
    floor = roundoff(torch.float64, operations=10 * evaluations[1]).atol
    return ToleranceResponse(
        (LOOSE_TOLERANCE, tight),
        (evaluations[0], evaluations[1]),
        (errors[0], errors[1]),
        order,
        floor,
    )
