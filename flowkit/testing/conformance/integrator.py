"""The integrator checker: accuracy, direction, tuple states, gradients, order.

See :func:`check_integrator`; the order and tolerance measurements themselves
are :mod:`flowkit.testing.order`, shared with flowkit's own tests.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from flowkit.interfaces.gradient_paths import missing_gradient_paths
from flowkit.kinds import capabilities_of
from flowkit.registry import Registry, get_registry
from flowkit.solution import Solution
from flowkit.state import as_tuple
from flowkit.testing import problems
from flowkit.testing.conformance.common import (
    ConformanceError,
    ConformanceTarget,
    accepted_options,
    build_target,
    max_error,
    target_label,
)
from flowkit.testing.order import (
    CountedDynamics,
    measure_order,
    measure_tolerance_response,
    order_is_supported,
)
from flowkit.testing.tolerances import (
    Tolerance,
    accuracy_options,
    integrator_tolerance,
)

__all__ = ["check_integrator"]


def check_integrator(
    integrator: ConformanceTarget,
    *,
    options: dict[str, Any] | None = None,
    target: float = 1e-6,
    registry: Registry | None = None,
) -> list[str]:
    """Check an integrator against closed-form problems in float64.

    Properties: ``contract`` (a :class:`~flowkit.solution.Solution` of the right
    shapes with statistics), ``accuracy`` at several output times,
    ``backward in time``, ``tuple state``, ``differentiable`` (backpropagated
    gradient of the final state equals the closed form) and, given by name or
    class (so that options can be varied):

    * fixed-step methods: ``convergence order`` (the slope of log error against
      log step is at least the declared order minus 1/2);
    * adaptive methods: ``tolerance proportionality`` (the error falls at least
      like ``tol**(1/2)`` as the tolerance tightens) and ``convergence order``
      (function evaluations grow no faster than ``tol**(-1/p)`` allows for the
      declared order ``p``, within the band derived in :mod:`flowkit.testing.order`;
      and, when the method declares ``first_step`` and ``max_step``, the slope at
      pinned steps as for fixed-step methods).

    Adaptive accuracy bounds scale with the number of steps, which the kit caps
    by the function evaluations it counts itself: a solver's own statistics can
    lower a bound, never raise it.

    Arguments:
        integrator: a registered name, an ``Integrator`` class or an instance.
        options: extra constructor options (name or class only).
        target: the accuracy the check asks for (tolerance or step size follow).
    """
    label = target_label(integrator)
    factory = (
        (registry or get_registry()).get("integrator", integrator).factory
        if isinstance(integrator, str)
        else integrator
    )
    caps = capabilities_of(factory, "integrator")
    accepted = accepted_options(factory)
    checked: list[str] = []
    missing = missing_gradient_paths(factory)
    if missing:
        raise ConformanceError(
            label,
            "gradient paths",
            f"declares {', '.join(f'{flag}=True' for flag in missing)} but does not implement "
            "the matching protocol of flowkit.interfaces.gradient_paths (e.g. "
            "integrate_checkpointed for checkpointable); implement it or drop the flag",
        )

    def make(span: float) -> tuple[Any, Callable[[CountedDynamics], Tolerance]]:
        opts, _ = accuracy_options(caps, accepted, target=target, span=span)
        solver = integrator
        if isinstance(integrator, str | type):
            opts.update(options or {})
            solver = build_target("integrator", integrator, opts, registry)

        def bound(evaluations: CountedDynamics, solution: Any) -> Tolerance:
            # Adaptive: local errors add up over the steps. The evaluations the kit
            # counted itself bound the number of steps, so a solver's own count can
            # only lower the bound (over-reporting steps gains nothing).
            _, tol = accuracy_options(caps, accepted, target=target, span=span)
            if caps["adaptive"]:
                tol = integrator_tolerance(
                    torch.float64,
                    order=int(caps["order"]),
                    adaptive=True,
                    rtol=target,
                    atol=target,
                    n_steps=_steps_taken(evaluations, solution),
                )
            return tol

        return solver, bound

    problem = problems.linear_skew(dim=3, batch=2)
    span = problem.t1 - problem.t0
    solver, bound = make(span)
    t = problem.times(3)
    counted = CountedDynamics(problem.func)
    solution = solver.integrate(counted, problem.y0, t)
    tol = bound(counted, solution)
    if not isinstance(solution, Solution):
        raise ConformanceError(label, "contract", f"integrate returned {type(solution).__name__}")
    ys = as_tuple(solution.ys)[0]
    if ys.shape != (3, *problem.y0.shape):
        raise ConformanceError(
            label,
            "contract",
            f"states at 3 times have shape {tuple(ys.shape)}, expected {(3, *problem.y0.shape)}",
        )
    if solution.stats.nfe <= 0:
        raise ConformanceError(label, "contract", "stats.nfe was not counted")
    checked.append("contract")
    for i, ti in enumerate(t.tolist()):
        error = max_error(ys[i], problem.exact(ti))
        if error > tol.atol * 3:  # |y| ~ 3: the bound scales with the solution
            raise ConformanceError(
                label, "accuracy", f"error {error:.3g} at t={ti:g} exceeds {tol.atol * 3:.3g}"
            )
    checked.append("accuracy")

    decay = problems.exponential_decay()
    solver, bound = make(decay.t1 - decay.t0)
    counted = CountedDynamics(decay.func)
    back = solver.integrate(counted, decay.exact(decay.t1), decay.times(2, backward=True))
    tol = bound(counted, back)
    error = max_error(back.final, decay.exact(decay.t0))
    if error > tol.atol * 10:  # the backward solution grows to |y| ~ 2 * e^1.4
        raise ConformanceError(
            label, "backward in time", f"error {error:.3g} integrating from t1 to t0"
        )
    checked.append("backward in time")

    rotation = problems.tuple_rotation()
    solver, bound = make(rotation.t1 - rotation.t0)
    counted = CountedDynamics(rotation.func)
    rotated = solver.integrate(counted, rotation.y0, rotation.times(2))
    tol = bound(counted, rotated)
    pair = rotated.final
    if not isinstance(pair, tuple) or len(pair) != 2:
        raise ConformanceError(label, "tuple state", "a tuple state did not come back as a tuple")
    error = max_error(pair, rotation.exact(rotation.t1))
    if error > tol.atol * 20:  # s grows to ~ 10
        raise ConformanceError(label, "tuple state", f"error {error:.3g} on a tuple state")
    checked.append("tuple state")

    decay = problems.exponential_decay()
    solver, bound = make(decay.t1 - decay.t0)
    y0 = decay.y0.clone().requires_grad_(True)
    counted = CountedDynamics(decay.func)
    solved = solver.integrate(counted, y0, decay.times(2))
    tol = bound(counted, solved)
    final = solved.final
    grads = torch.autograd.grad(final.sum(), (y0, decay.param))
    expected = (decay.grad_y0(decay.t0, decay.t1), decay.grad_param(decay.t0, decay.t1))
    for name, got, want in zip(("y0", "parameter"), grads, expected, strict=True):
        error = max_error(got, want)
        if error > tol.atol * 20:
            raise ConformanceError(
                label, "differentiable", f"backpropagated gradient w.r.t. {name} off by {error:.3g}"
            )
    checked.append("differentiable")

    if isinstance(integrator, str | type):

        def build(opts: dict[str, Any]) -> Any:
            return build_target("integrator", integrator, {**(options or {}), **opts}, registry)

        if caps["adaptive"]:
            _check_tolerance_response(label, int(caps["order"]), build)
            _check_order(label, caps, accepted, build)  # at pinned steps, when it can be
            checked += ["tolerance proportionality", "convergence order"]
        elif _check_order(label, caps, accepted, build):
            checked.append("convergence order")
    checked.append("gradient paths")
    return checked


def _steps_taken(evaluations: CountedDynamics, solution: Any) -> int:
    """Steps to charge a solve with: the solver's count, at most the evaluations counted."""
    stats = getattr(solution, "stats", None)
    reported = getattr(stats, "n_accepted", 0) + getattr(stats, "n_rejected", 0)
    calls = max(evaluations.calls, 1)
    if isinstance(reported, int) and reported > 0:
        return min(reported, calls)
    return calls


def _check_order(
    label: str,
    caps: dict[str, Any],
    accepted: set[str] | None,
    build: Callable[[dict[str, Any]], Any],
) -> bool:
    """Fixed steps: the measured order supports the declared one (see :mod:`.order`).

    Returns False when the step cannot be fixed (nothing measured).
    """
    order = int(caps["order"])
    measured = measure_order(build, caps, accepted)
    if measured is None:
        return False
    if measured.at_roundoff:
        raise ConformanceError(  # pragma: no cover - an order far above the declared one
            label, "convergence order", f"{measured.describe()} reach round-off; cannot measure"
        )
    if not order_is_supported(measured.slope, order):
        raise ConformanceError(
            label,
            "convergence order",
            f"{measured.describe()}, declared {order} (at least {order - 0.5} required)",
        )
    return True


def _check_tolerance_response(
    label: str, order: int, build: Callable[[dict[str, Any]], Any]
) -> None:
    """Adaptive: error follows the tolerance, cost follows the order (see :mod:`.order`)."""
    response = measure_tolerance_response(build, order)
    if not response.error_follows_tolerance:
        raise ConformanceError(
            label,
            "tolerance proportionality",
            f"the error does not fall as the tolerance tightens: {response.describe()}",
        )
    if not response.cost_follows_order:
        raise ConformanceError(
            label,
            "convergence order",
            f"function evaluations grow faster than the declared order allows: "
            f"{response.describe()}",
        )
