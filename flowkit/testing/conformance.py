"""Conformance checks: the contract every plugin of a kind must meet.

Plugin authors call these on a component given by registered name, by class
or by instance; the built-ins are held to exactly the same checks. Each check
raises :class:`ConformanceError` naming the property that broke, and returns
the list of properties it verified.

Example:
    >>> from flowkit.testing.conformance import check_integrator
    >>> check_integrator("rk4")  # doctest: +ELLIPSIS
    ['contract', 'accuracy', 'backward in time', 'tuple state', 'differentiable', ...]
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from flowkit.compat import check_compatibility
from flowkit.interfaces.gradient_paths import missing_gradient_paths
from flowkit.kinds import capabilities_of
from flowkit.registry import ComponentSpec, Registry, get_registry
from flowkit.solution import Solution
from flowkit.state import as_tuple
from flowkit.testing import problems
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
    roundoff,
    statistical_bound,
)

__all__ = [
    "ConformanceError",
    "check_integrator",
    "check_trace_estimator",
    "check_gradient_strategy",
    "check_vector_field",
    "expm_frechet_adjoint",
]

ConformanceTarget = str | type | Any


class ConformanceError(AssertionError):
    """A component broke a property of its kind's contract.

    Attributes:
        property: the name of the broken property (e.g. ``"convergence order"``).
    """

    def __init__(self, component: str, prop: str, detail: str) -> None:
        super().__init__(f"{component} breaks '{prop}': {detail}")
        self.property = prop


def _build(
    kind: str, target: ConformanceTarget, options: dict[str, Any], registry: Registry | None
) -> Any:
    if isinstance(target, str):
        return (registry or get_registry()).create(kind, target, **options)
    if isinstance(target, type):
        return target(**options)
    if options:
        raise TypeError("options cannot be given with an instance; configure the instance")
    return target


def _label(target: ConformanceTarget) -> str:
    if isinstance(target, str):
        return repr(target)
    cls = target if isinstance(target, type) else type(target)
    return cls.__name__


def _accepted(factory: Any) -> set[str] | None:
    """The option names the registry validates for ``factory`` (None: any)."""
    cls = factory if isinstance(factory, type) else type(factory)
    names = ComponentSpec(kind="integrator", name=cls.__name__, factory=cls).options()
    return None if names is None else set(names)


def _max_error(a: Any, b: Any) -> float:
    pairs = zip(as_tuple(a), as_tuple(b), strict=True)
    return max(float((x.detach() - y.detach()).abs().max()) for x, y in pairs)


# -- integrators --------------------------------------------------------------
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
    label = _label(integrator)
    factory = (
        (registry or get_registry()).get("integrator", integrator).factory
        if isinstance(integrator, str)
        else integrator
    )
    caps = capabilities_of(factory, "integrator")
    accepted = _accepted(factory)
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
            solver = _build("integrator", integrator, opts, registry)

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
        error = _max_error(ys[i], problem.exact(ti))
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
    error = _max_error(back.final, decay.exact(decay.t0))
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
    error = _max_error(pair, rotation.exact(rotation.t1))
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
        error = _max_error(got, want)
        if error > tol.atol * 20:
            raise ConformanceError(
                label, "differentiable", f"backpropagated gradient w.r.t. {name} off by {error:.3g}"
            )
    checked.append("differentiable")

    if isinstance(integrator, str | type):

        def build(opts: dict[str, Any]) -> Any:
            return _build("integrator", integrator, {**(options or {}), **opts}, registry)

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


# -- trace estimators ---------------------------------------------------------
class _QuadraticField(nn.Module):
    """``f(x) = tanh(x W^T) V^T + x A^T``: nonlinear, with a dense Jacobian."""

    def __init__(self, dim: int, generator: torch.Generator) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.randn(dim, dim, generator=generator, dtype=torch.float64))
        self.v = nn.Parameter(torch.randn(dim, dim, generator=generator, dtype=torch.float64))
        self.a = nn.Parameter(torch.randn(dim, dim, generator=generator, dtype=torch.float64))

    def forward(self, t: Tensor, x: Tensor) -> Tensor:
        return torch.tanh(x @ self.w.T) @ self.v.T * (1 + t) + x @ self.a.T


def _exact_divergence(field: nn.Module, t: Tensor, x: Tensor) -> Tensor:
    rows = []
    for b in range(x.shape[0]):
        jac = torch.autograd.functional.jacobian(lambda xb: field(t, xb[None])[0], x[b])
        rows.append(torch.diagonal(jac).sum())
    return torch.stack(rows)


def check_trace_estimator(
    estimator: ConformanceTarget,
    *,
    options: dict[str, Any] | None = None,
    n_draws: int = 400,
    registry: Registry | None = None,
) -> list[str]:
    """Check a trace estimator on a nonlinear field with a dense Jacobian.

    Properties: ``contract`` (``f`` equals the field's output, the divergence
    has shape ``(batch,)``), ``value`` (deterministic: equals the autograd trace
    to round-off; stochastic: the mean over ``n_draws`` seeded probe draws is
    within 4 standard errors of it, and probes drawn with one seed repeat),
    ``no_grad`` (works without grad mode, results without history) and
    ``differentiable`` (the divergence's gradient with respect to the field's
    parameters matches the exact trace's, statistically for stochastic ones).
    Estimators that need a closed-form divergence are checked on a ``linear``
    field instead.
    """
    label = _label(estimator)
    est = _build("trace_estimator", estimator, dict(options or {}), registry)
    caps = capabilities_of(est, "trace_estimator")
    gen = torch.Generator().manual_seed(0)
    dim, batch = 4, 3
    if caps["requires_divergence"]:
        from flowkit.testing.cnf_problems import affine_field

        field: nn.Module = affine_field(torch.randn(dim, dim, generator=gen, dtype=torch.float64))
    else:
        field = _QuadraticField(dim, gen)
    x = torch.randn(batch, dim, generator=gen, dtype=torch.float64)
    t = torch.tensor(0.3, dtype=torch.float64)
    exact = _exact_divergence(field, t, x).detach()
    checked = []

    probes = est.sample_probes(x, torch.Generator().manual_seed(1))
    if caps["stochastic"]:
        again = est.sample_probes(x, torch.Generator().manual_seed(1))
        if probes is None or not torch.equal(probes, again):
            raise ConformanceError(label, "contract", "probes are not reproducible from a seed")
    f, div = est.estimate(field, t, x, probes)
    if div.shape != (batch,):
        raise ConformanceError(label, "contract", f"divergence shape {tuple(div.shape)}")
    if _max_error(f, field(t, x)) > roundoff(torch.float64).atol:
        raise ConformanceError(label, "contract", "returned f differs from field(t, x)")
    checked.append("contract")

    if caps["stochastic"]:
        gen = torch.Generator().manual_seed(2)
        draws = []
        with torch.no_grad():
            for _ in range(n_draws):
                draws.append(est.estimate(field, t, x, est.sample_probes(x, gen))[1])
        samples = torch.stack(draws)
        mean, std_error = samples.mean(0), samples.std(0) / math.sqrt(n_draws)
        if bool((std_error == 0).all()):
            raise ConformanceError(label, "value", "a stochastic estimator with zero variance")
        gap = (mean - exact).abs()
        bound = statistical_bound(1.0) * std_error + roundoff(torch.float64).atol
        if bool((gap > bound).any()):
            raise ConformanceError(
                label,
                "value",
                f"mean {mean.tolist()} vs exact {exact.tolist()}: more than 4 "
                f"standard errors ({std_error.tolist()}) apart — biased",
            )
    else:
        error = _max_error(div, exact)
        if error > roundoff(torch.float64).atol * max(1.0, float(exact.abs().max())):
            raise ConformanceError(label, "value", f"off the exact trace by {error:.3g}")
    checked.append("value")

    with torch.no_grad():
        f0, div0 = est.estimate(field, t, x, probes)
    if f0.requires_grad or div0.requires_grad:
        raise ConformanceError(label, "no_grad", "results carry history under torch.no_grad()")
    if _max_error(div0, div) > roundoff(torch.float64).atol * 10:
        raise ConformanceError(label, "no_grad", "the value changes under torch.no_grad()")
    checked.append("no_grad")

    params = [p for p in field.parameters() if p.requires_grad]

    def grads_of(value: Tensor) -> list[Tensor]:
        got = torch.autograd.grad(value, params, allow_unused=True)
        return [torch.zeros_like(p) if g is None else g for g, p in zip(got, params, strict=True)]

    want = grads_of(_exact_divergence_graph(field, t, x).sum())

    def with_graph(div: Tensor) -> Tensor:
        if not div.requires_grad:
            raise ConformanceError(
                label,
                "differentiable",
                "the divergence carries no autograd graph (requires_grad is False while the "
                "field's parameters require grad), so no gradient reaches the parameters: "
                "build it with create_graph=True and do not detach it",
            )
        return div

    if caps["stochastic"]:
        gen = torch.Generator().manual_seed(3)
        n = max(30, n_draws // 8)
        acc = [torch.zeros_like(p) for p in params]
        sq = [torch.zeros_like(p) for p in params]
        for _ in range(n):
            div = with_graph(est.estimate(field, t, x, est.sample_probes(x, gen))[1])
            g = grads_of(div.sum())
            acc = [a + gi for a, gi in zip(acc, g, strict=True)]
            sq = [s + gi**2 for s, gi in zip(sq, g, strict=True)]
        for a, s, w in zip(acc, sq, want, strict=True):
            mean = a / n
            var = (s / n - mean**2).clamp_min(0) * n / (n - 1)
            bound = 4 * (var / n).sqrt() + 1e-10
            if bool(((mean - w).abs() > bound).any()):
                raise ConformanceError(label, "differentiable", "parameter gradient is biased")
    else:
        got = grads_of(with_graph(est.estimate(field, t, x, probes)[1]).sum())
        error = max(_max_error(g, w) for g, w in zip(got, want, strict=True))
        if error > roundoff(torch.float64).atol * 10:
            raise ConformanceError(
                label, "differentiable", f"parameter gradient off by {error:.3g}"
            )
    checked.append("differentiable")
    return checked


def _exact_divergence_graph(field: nn.Module, t: Tensor, x: Tensor) -> Tensor:
    x = x.detach().requires_grad_(True)
    f = field(t, x)
    total = torch.zeros(x.shape[0], dtype=x.dtype)
    for i in range(x.shape[1]):
        (g,) = torch.autograd.grad(f[:, i].sum(), x, create_graph=True)
        total = total + g[:, i]
    return total


# -- gradient strategies ------------------------------------------------------
def expm_frechet_adjoint(a: Tensor, g: Tensor) -> Tensor:
    """``d <G, expm(A)> / dA``: the Fréchet derivative of ``expm`` at ``A^T`` applied to ``G``."""
    return problems.expm_frechet(a.T, g)


def _grads(value: Tensor, inputs: tuple[Tensor, ...]) -> list[Tensor]:
    """Gradients of ``value``; an input the graph does not reach gets zeros."""
    if not value.requires_grad:
        return [torch.zeros_like(i) for i in inputs]
    got = torch.autograd.grad(value, inputs, allow_unused=True)
    return [torch.zeros_like(i) if g is None else g for g, i in zip(got, inputs, strict=True)]


def _compatible_integrator(strategy: Any, registry: Registry) -> str:
    """``dopri5`` when it fits, else the highest-order compatible integrator."""
    if ("integrator", "dopri5") in registry:
        spec = registry.get("integrator", "dopri5")
        if check_compatibility(integrator=spec, gradient=strategy):
            return spec.name
    fitting = [
        s
        for s in registry.specs("integrator")
        if check_compatibility(integrator=s, gradient=strategy)
    ]
    if fitting:
        best = max(fitting, key=lambda s: (s.capabilities["adaptive"], s.capabilities["order"]))
        return best.name
    raise ConformanceError(
        _label(strategy), "compatibility", "no registered integrator satisfies its requirements"
    )


def check_gradient_strategy(
    strategy: ConformanceTarget,
    *,
    options: dict[str, Any] | None = None,
    integrator: str | None = None,
    target: float = 1e-8,
    registry: Registry | None = None,
) -> list[str]:
    """Check a gradient strategy on ``y' = y A^T`` against the closed-form gradients.

    Properties: ``gradient`` (gradients of ``<W, y(T)>`` with respect to
    ``y0`` and ``A`` equal ``W expm(A T)`` and the Fréchet-derivative formula,
    within a bound from the integrator's accuracy) and ``tuple state`` (a tuple
    state whose right-hand side uses a probe fixed for the solve: gradients
    agree with the closed form too).

    Arguments:
        integrator: the integrator to run it with (default: the first
            compatible of ``dopri5``, ``rk4``, then any registered one).
    """
    registry = registry or get_registry()
    label = _label(strategy)
    strat = _build("gradient_strategy", strategy, dict(options or {}), registry)
    name = integrator or _compatible_integrator(strat, registry)
    spec = registry.get("integrator", name)
    t0, t1 = 0.0, 1.0
    opts, tol = accuracy_options(
        spec.capabilities, set(spec.options() or []) or None, target=target, span=t1 - t0
    )
    solver = registry.create("integrator", name, **opts)
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(3, 3, generator=gen, dtype=torch.float64) * 0.5
    y0 = torch.randn(2, 3, generator=gen, dtype=torch.float64).requires_grad_(True)
    w = torch.randn(2, 3, generator=gen, dtype=torch.float64)
    dynamics = problems.LinearDynamics(a)
    t = torch.tensor([t0, t1], dtype=torch.float64)
    solution = strat.solve(solver, dynamics, y0, t, params=None)
    final = as_tuple(solution.ys)[0][-1]
    grad_y0, grad_a = _grads((w * final).sum(), (y0, dynamics.a))
    m = torch.linalg.matrix_exp(a * (t1 - t0))
    want_y0 = w @ m
    want_a = (t1 - t0) * expm_frechet_adjoint(a * (t1 - t0), w.T @ y0.detach())
    bound = tol.atol * 50  # the adjoint re-solves backward: twice the error, times |W||y|
    for what, got, want in (("y0", grad_y0, want_y0), ("A", grad_a, want_a)):
        error = _max_error(got, want)
        if error > bound:
            raise ConformanceError(
                label,
                "gradient",
                f"gradient w.r.t. {what} off the closed form by {error:.3g} "
                f"(bound {bound:.3g}) with integrator {name!r}",
            )
    checked = ["gradient"]

    probe = torch.randn(2, 3, generator=gen, dtype=torch.float64)

    def augmented(t: Tensor, state: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        y, _ = state
        dy = dynamics(t, y)
        return dy, (probe * dy).sum(-1)

    s0 = torch.zeros(2, dtype=torch.float64)
    solution = strat.solve(solver, augmented, (y0, s0), t, params=list(dynamics.parameters()))
    _, s_final = solution.ys
    # s(T) = <probe, y(T) - y0> per row.
    got = _grads(s_final[-1].sum(), (y0, dynamics.a))
    want = (
        probe @ m - probe,
        (t1 - t0) * expm_frechet_adjoint(a * (t1 - t0), probe.T @ y0.detach()),
    )
    for what, g, wv in zip(("y0", "A"), got, want, strict=True):
        error = _max_error(g, wv)
        if error > bound:
            raise ConformanceError(
                label,
                "tuple state",
                f"gradient w.r.t. {what} with a fixed probe off by {error:.3g}",
            )
    checked.append("tuple state")
    return checked


# -- vector fields ------------------------------------------------------------
def check_vector_field(
    field: ConformanceTarget,
    *,
    dim: int = 3,
    options: dict[str, Any] | None = None,
    registry: Registry | None = None,
) -> list[str]:
    """Check a vector field's contract.

    Properties: ``contract`` (output shape and dtype equal the input's, in
    float32 and float64), ``rows independent`` (the Jacobian across a batch is
    block diagonal), ``divergence`` (when declared, equals the autograd trace)
    and ``differentiable`` (gradients reach every parameter).

    Arguments:
        field: a registered name or class (built with ``dim=dim`` and
            ``options``), or an instance.
    """
    label = _label(field)
    opts = dict(options or {})
    if isinstance(field, str | type):
        opts.setdefault("dim", dim)
    module: nn.Module = _build("vector_field", field, opts, registry)
    checked = []
    t = torch.tensor(0.4, dtype=torch.float64)
    for dtype in (torch.float32, torch.float64):
        m = module.to(dtype)
        x = torch.randn(5, dim, dtype=dtype)
        out = m(t.to(dtype), x)
        if out.shape != x.shape or out.dtype != dtype:
            raise ConformanceError(
                label,
                "contract",
                f"output {tuple(out.shape)} {out.dtype} for input {tuple(x.shape)} {dtype}",
            )
    module = module.to(torch.float64)
    checked.append("contract")

    x = torch.randn(4, dim, dtype=torch.float64)
    jac = torch.autograd.functional.jacobian(lambda z: module(t, z), x)  # (4, d, 4, d)
    for b in range(4):
        for c in range(4):
            if b != c and float(jac[b, :, c, :].abs().max()) > 0:
                raise ConformanceError(
                    label, "rows independent", f"output row {b} depends on input row {c}"
                )
    checked.append("rows independent")

    if capabilities_of(module, "vector_field")["has_divergence"]:
        exact = torch.stack([torch.diagonal(jac[b, :, b, :]).sum() for b in range(4)])
        got = module.divergence(t, x)
        if _max_error(got, exact) > roundoff(torch.float64).atol:
            raise ConformanceError(label, "divergence", "closed-form divergence is wrong")
        checked.append("divergence")

    params = [p for p in module.parameters() if p.requires_grad]
    if params:
        grads = torch.autograd.grad(module(t, x).pow(2).sum(), params, allow_unused=True)
        missing = [i for i, g in enumerate(grads) if g is None]
        if missing:
            raise ConformanceError(label, "differentiable", f"parameters {missing} get no gradient")
        checked.append("differentiable")
    return checked


_: Callable[..., Any] = check_integrator  # keep the public checks discoverable for doc tools
