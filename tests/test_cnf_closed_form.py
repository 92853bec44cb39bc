"""CNF log-densities against closed forms, for every integrator and every exact estimator.

Linear (constant and time-dependent) and elementwise ``a tanh(x)`` fields have
known flows (flowkit.testing.cnf_problems); the log-density error must stay
within the integrator's tolerance, propagated through ``log N(z)`` (whose
gradient is ``-z``, hence the factor ``1 + |z|``).
"""

from __future__ import annotations

import pytest
import torch
from registry_helpers import suite_registry

from flowkit import CNF
from flowkit.testing import cnf_problems as P

REGISTRY = suite_registry()
INTEGRATORS = REGISTRY.names("integrator")
EXACT_TRACES = [
    s.name for s in REGISTRY.specs("trace_estimator") if not s.capabilities["stochastic"]
]
FIELD_TRACES = [
    n
    for n in EXACT_TRACES
    if not REGISTRY.get("trace_estimator", n).capabilities["requires_divergence"]
]


def _check(model: CNF, x: torch.Tensor, expected: torch.Tensor, z: torch.Tensor, tol) -> None:
    scale = 1.0 + float(z.norm(dim=1).max())
    tol.scaled(scale).assert_close(model.log_prob(x), expected, "log_prob")


def _model(field, integrator: str, trace: str, **kw) -> tuple[CNF, object]:
    options, tol = P.solver_options(REGISTRY.get("integrator", integrator), **kw)
    model = CNF(field, integrator, trace, "backprop", dim=field.dim, integrator_options=options)
    return model, tol


@pytest.fixture(scope="module")
def linear_problem() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(5)
    matrix = 0.6 * torch.randn(2, 2, generator=gen, dtype=torch.float64)
    bias = 0.3 * torch.randn(2, generator=gen, dtype=torch.float64)
    x = torch.randn(5, 2, generator=gen, dtype=torch.float64)
    return matrix, bias, x


@pytest.mark.parametrize("trace", EXACT_TRACES)
@pytest.mark.parametrize("integrator", INTEGRATORS)
def test_linear_field_closed_form(linear_problem, integrator: str, trace: str) -> None:
    matrix, bias, x = linear_problem
    model, tol = _model(P.affine_field(matrix, bias), integrator, trace)
    z = P.affine_pull_back(x, matrix, bias)
    _check(model, x, P.affine_log_prob(x, matrix, bias), z, tol)


@pytest.mark.parametrize("integrator", INTEGRATORS)
def test_time_dependent_linear_closed_form(linear_problem, integrator: str) -> None:
    matrix, bias, x = linear_problem
    rate = 0.8
    field = P.affine_field(matrix, bias, rate)
    model, tol = _model(field, integrator, "analytic")
    z = P.affine_pull_back(x, matrix, bias, rate=rate)
    # (1 + rate t) <= 1.8 on [0, 1]: the field's scale, and so the error's, grows by that much.
    _check(model, x, P.affine_log_prob(x, matrix, bias, rate=rate), z, tol.scaled(1 + rate))


@pytest.mark.parametrize("integrator", INTEGRATORS)
def test_tanh_field_closed_form(integrator: str) -> None:
    rates = torch.tensor([0.7, -0.9, 0.4], dtype=torch.float64)
    x = torch.tensor([[0.3, -1.2, 2.0], [-0.5, 0.8, -1.5]], dtype=torch.float64)
    model, tol = _model(P.TanhField(rates=rates), integrator, "analytic")
    _check(model, x, P.tanh_log_prob(x, rates), P.tanh_pull_back(x, rates), tol)


@pytest.mark.parametrize("trace", EXACT_TRACES)
def test_tanh_field_every_exact_estimator(trace: str) -> None:
    rates = torch.tensor([0.7, -0.9, 0.4], dtype=torch.float64)
    x = torch.tensor([[0.3, -1.2, 2.0], [-0.5, 0.8, -1.5]], dtype=torch.float64)
    model, tol = _model(P.TanhField(rates=rates), "dopri5", trace, target=1e-10)
    _check(model, x, P.tanh_log_prob(x, rates), P.tanh_pull_back(x, rates), tol)


@pytest.mark.parametrize("t0, t1", [(0.0, 1.0), (-0.5, 0.25), (1.0, 0.0)])
def test_custom_time_span(linear_problem, t0: float, t1: float) -> None:
    matrix, bias, x = linear_problem
    options, tol = P.solver_options(REGISTRY.get("integrator", "dopri5"))
    model = CNF(
        P.affine_field(matrix, bias),
        "dopri5",
        "exact",
        "backprop",
        dim=2,
        t0=t0,
        t1=t1,
        integrator_options=options,
    )
    z = P.affine_pull_back(x, matrix, bias, t0=t0, t1=t1)
    _check(model, x, P.affine_log_prob(x, matrix, bias, t0=t0, t1=t1), z, tol)
