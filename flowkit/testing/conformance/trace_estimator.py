"""The trace-estimator checker: exact or unbiased divergence, fixed probes, gradients.

See :func:`check_trace_estimator`.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from flowkit.kinds import capabilities_of
from flowkit.registry import Registry
from flowkit.testing.conformance.common import (
    ConformanceError,
    ConformanceTarget,
    build_target,
    max_error,
    target_label,
)
from flowkit.testing.tolerances import (
    roundoff,
    statistical_bound,
)

__all__ = ["check_trace_estimator"]


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
    label = target_label(estimator)
    est = build_target("trace_estimator", estimator, dict(options or {}), registry)
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
    if max_error(f, field(t, x)) > roundoff(torch.float64).atol:
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
        error = max_error(div, exact)
        if error > roundoff(torch.float64).atol * max(1.0, float(exact.abs().max())):
            raise ConformanceError(label, "value", f"off the exact trace by {error:.3g}")
    checked.append("value")

    with torch.no_grad():
        f0, div0 = est.estimate(field, t, x, probes)
    if f0.requires_grad or div0.requires_grad:
        raise ConformanceError(label, "no_grad", "results carry history under torch.no_grad()")
    if max_error(div0, div) > roundoff(torch.float64).atol * 10:
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
        error = max(max_error(g, w) for g, w in zip(got, want, strict=True))
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
