"""Regularizers: closed forms on linear fields, the Hutchinson estimate statistically."""

from __future__ import annotations

import math

import pytest
import torch
from registry_helpers import suite_registry
from torch import Tensor, nn


class _Linear(nn.Module):
    def __init__(self, a: Tensor) -> None:
        super().__init__()
        self.a = nn.Parameter(a)

    def forward(self, t: Tensor, x: Tensor) -> Tensor:
        return x @ self.a.T


def _setup(seed: int = 0) -> tuple[nn.Module, Tensor, Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(3, 3, generator=g)
    field = _Linear(a)
    x = torch.randn(5, 3, generator=g).requires_grad_(True)
    return field, a, x, field(torch.tensor(0.0), x)


@pytest.mark.parametrize("name", suite_registry().names("regularizer"))
def test_every_regularizer_rate_shape_and_gradients(name: str) -> None:
    reg = suite_registry().create("regularizer", name)
    field, _, x, dx = _setup()
    probes = reg.sample_probes(x, torch.Generator().manual_seed(1))
    assert (probes is not None) == bool(reg.stochastic)
    rate = reg.rate(field, torch.tensor(0.0), x, dx, probes)
    assert rate.shape == (5,) and bool((rate >= 0).all())
    (grad,) = torch.autograd.grad(rate.sum(), field.a)  # penalties must train the field
    assert bool(torch.isfinite(grad).all()) and float(grad.abs().sum()) > 0
    with torch.no_grad():  # evaluation without a graph still works
        again = reg.rate(field, torch.tensor(0.0), x.detach(), dx.detach(), probes)
    assert torch.allclose(again, rate.detach())


def test_kinetic_energy_is_squared_speed() -> None:
    field, a, x, dx = _setup()
    rate = suite_registry().create("regularizer", "kinetic_energy").rate(field, 0, x, dx)
    assert torch.allclose(rate, ((x @ a.T) ** 2).sum(1), rtol=1e-12)


def test_exact_frobenius_of_linear_field() -> None:
    field, a, x, dx = _setup()
    reg = suite_registry().create("regularizer", "jacobian_frobenius_exact")
    rate = reg.rate(field, torch.tensor(0.0), x, dx)
    assert torch.allclose(rate, torch.full((5,), float((a**2).sum())), rtol=1e-12)


@pytest.mark.parametrize("distribution", ["gaussian", "rademacher"])
def test_hutchinson_frobenius_is_unbiased(distribution: str) -> None:
    field, a, _, _ = _setup(2)
    x = torch.zeros(20_000, 3, requires_grad=True)
    dx = field(torch.tensor(0.0), x)
    reg = suite_registry().create("regularizer", "jacobian_frobenius", distribution=distribution)
    probes = reg.sample_probes(x, torch.Generator().manual_seed(0))
    rate = reg.rate(field, torch.tensor(0.0), x, dx, probes).detach()
    se = float(rate.std()) / math.sqrt(len(rate))
    assert abs(float(rate.mean()) - float((a**2).sum())) < 4 * se


def test_hutchinson_needs_probes_and_a_known_distribution() -> None:
    from flowkit.errors import FlowkitError

    field, _, x, dx = _setup()
    reg = suite_registry().create("regularizer", "jacobian_frobenius")
    with pytest.raises(FlowkitError, match="sample_probes"):
        reg.rate(field, torch.tensor(0.0), x, dx, None)
    with pytest.raises(ValueError, match="rademacher"):
        suite_registry().create("regularizer", "jacobian_frobenius", distribution="uniform")
    with pytest.raises(TypeError, match="Valid options"):
        suite_registry().create("regularizer", "kinetic_energy", weight=1.0)


def test_regularizers_integrate_along_the_cnf_path() -> None:
    # For f(t, x) = A x the kinetic energy along x(t) = expm(A t) x0 over [0, 1] is
    # integral ||A expm(A t) x0||^2 dt; with A = a I (scalar) it is
    # a^2 ||x0||^2 (exp(2a) - 1) / (2a). The CNF integrates backward from x1 = e^a x0.
    from flowkit.cnf import CNF

    a = 0.7
    model = CNF(
        "linear",
        "dopri5",
        "exact",
        "backprop",
        dim=2,
        field_options={"matrix": a * torch.eye(2)},
        integrator_options={"rtol": 1e-10, "atol": 1e-10},
        regularizers=("kinetic_energy", "jacobian_frobenius_exact"),
    )
    x0 = torch.tensor([[1.0, -2.0], [0.5, 0.25]])
    x1 = math.exp(a) * x0
    _, reg = model.log_prob_and_regularization(x1)
    kinetic = a**2 * (x0**2).sum(1) * (math.exp(2 * a) - 1) / (2 * a)
    assert torch.allclose(reg[:, 0], kinetic, rtol=1e-7)
    assert torch.allclose(reg[:, 1], torch.full((2,), 2 * a**2), rtol=1e-7)
