"""The gradient-strategy checker: gradients through a solve against the closed form.

See :func:`check_gradient_strategy`; the reference is the Fréchet derivative
of the matrix exponential (:func:`expm_frechet_adjoint`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from flowkit.compat import check_compatibility
from flowkit.registry import Registry, get_registry
from flowkit.state import as_tuple
from flowkit.testing import problems
from flowkit.testing.conformance.common import (
    ConformanceError,
    ConformanceTarget,
    build_target,
    max_error,
    target_label,
)
from flowkit.testing.tolerances import (
    accuracy_options,
)

__all__ = ["check_gradient_strategy", "expm_frechet_adjoint"]


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
        target_label(strategy),
        "compatibility",
        "no registered integrator satisfies its requirements",
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
    label = target_label(strategy)
    strat = build_target("gradient_strategy", strategy, dict(options or {}), registry)
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
        error = max_error(got, want)
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
        error = max_error(g, wv)
        if error > bound:
            raise ConformanceError(
                label,
                "tuple state",
                f"gradient w.r.t. {what} with a fixed probe off by {error:.3g}",
            )
    checked.append("tuple state")
    return checked
