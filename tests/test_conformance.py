"""The public conformance kit: every built-in passes it, deliberately wrong plugins fail it.

Components are read from a registry built with discovery (entry points
included), so an installed third-party plugin is checked here with no edit;
this module is about discovery, unlike the rest of the suite. Each wrong
plugin must fail with a message naming the property it breaks: proof that the
checks can fail.
"""

from __future__ import annotations

from typing import ClassVar

import pytest
import torch
from flowkit.plugins.gradients import Adjoint
from flowkit.plugins.native_integrators import RK4, Bosh3, Dopri5, Euler
from flowkit.plugins.trace_estimators import ExactTrace
from torch import Tensor, nn

from flowkit.interfaces import GradientStrategy, VectorField
from flowkit.registry import build_registry, reset_registry
from flowkit.rk import ButcherTableau, FixedStepRungeKutta
from flowkit.testing.conformance import (
    ConformanceError,
    check_gradient_strategy,
    check_integrator,
    check_trace_estimator,
    check_vector_field,
)

REGISTRY = build_registry()


@pytest.fixture(autouse=True)
def _discovered_registry() -> None:
    """The conformance checks resolve names in the discovered registry."""
    reset_registry(REGISTRY)


@pytest.mark.parametrize("name", REGISTRY.names("integrator"))
def test_integrator_conforms(name: str) -> None:
    checked = check_integrator(name, target=1e-5)
    assert {"contract", "accuracy", "backward in time", "tuple state", "differentiable"} <= set(
        checked
    )
    assert "convergence order" in checked
    if REGISTRY.get("integrator", name).capabilities["adaptive"]:
        assert "tolerance proportionality" in checked


@pytest.mark.parametrize("name", REGISTRY.names("trace_estimator"))
def test_trace_estimator_conforms(name: str) -> None:
    assert check_trace_estimator(name) == ["contract", "value", "no_grad", "differentiable"]


@pytest.mark.parametrize("name", REGISTRY.names("gradient_strategy"))
def test_gradient_strategy_conforms(name: str) -> None:
    assert check_gradient_strategy(name) == ["gradient", "tuple state"]


@pytest.mark.parametrize("name", REGISTRY.names("vector_field"))
def test_vector_field_conforms(name: str) -> None:
    checked = check_vector_field(name)
    assert {"contract", "rows independent", "differentiable"} <= set(checked)


# -- deliberately wrong plugins -----------------------------------------------
WRONG_RK4 = ButcherTableau(
    "wrong_rk4",
    c=RK4.c,
    a=((), (0.5,), (0.1, 0.4), (0.0, 0.0, 1.0)),  # a[2] should be (0, 1/2); rows still sum to c
    b=RK4.b,
    order=4,
)


class WrongRK4(FixedStepRungeKutta):
    """RK4 with one wrong tableau coefficient: consistent, but not of order 4."""

    order = 4
    tableau: ClassVar[ButcherTableau] = WRONG_RK4


class CheatingEuler(Euler):
    """Explicit Euler at 2000 fixed steps, declared adaptive of order 5: it takes
    ``rtol``/``atol`` and ignores them. Its error (6e-3 on ``linear_skew``) stays
    within the step-count-scaled accuracy bound, so only the tolerance sweep can tell."""

    adaptive: ClassVar[bool] = True
    order: ClassVar[int] = 5

    def __init__(self, *, rtol: float = 1e-6, atol: float = 1e-6) -> None:
        super().__init__(n_steps=2000)


class OverReportingEuler(Euler):
    """Explicit Euler at 40 fixed steps, declared adaptive, that reports a million steps
    (the old accuracy bound grew with the reported count and admitted its 4e-2 error)."""

    adaptive: ClassVar[bool] = True
    order: ClassVar[int] = 1

    def __init__(self, *, rtol: float = 1e-6, atol: float = 1e-6) -> None:
        super().__init__(n_steps=40)

    def integrate(self, func, y0, t):
        solution = super().integrate(func, y0, t)
        solution.stats.n_accepted = 10**6
        return solution


class Bosh3DeclaredFifthOrder(Bosh3):
    """Bosh3 (order 3) declaring order 5: its error follows the tolerance, its cost does not."""

    order: ClassVar[int] = 5


class DetachedExactTrace(ExactTrace):
    """The exact trace, returned without its autograd graph."""

    def estimate(self, field, t, x, probes=None):
        f, div = super().estimate(field, t, x, probes)
        return f, div.detach()


class ScaledExactTrace(ExactTrace):
    """An exact trace off by a factor of 1.05."""

    def estimate(self, field, t, x, probes=None):
        f, div = super().estimate(field, t, x, probes)
        return f, 1.05 * div


class ParameterlessAdjoint(GradientStrategy):
    """An adjoint that drops the parameter-adjoint term (no gradient reaches parameters)."""

    def solve(self, integrator, func, y0, t, *, params=None):
        return Adjoint().solve(integrator, lambda s, y: func(s, y), y0, t, params=())


class LeakyField(VectorField):
    """A field that mixes rows (subtracts the batch mean): breaks row independence."""

    def __init__(self, *, dim: int) -> None:
        super().__init__()
        self.linear = nn.Linear(dim, dim)

    def forward(self, t: Tensor, x: Tensor) -> Tensor:
        y = self.linear(x)
        return y - y.mean(0, keepdim=True)


class WrongDivergenceField(VectorField):
    """A linear field whose declared divergence is missing a factor."""

    has_divergence = True

    def __init__(self, *, dim: int) -> None:
        super().__init__()
        self.a = nn.Parameter(torch.randn(dim, dim))

    def forward(self, t: Tensor, x: Tensor) -> Tensor:
        return x @ self.a.T

    def divergence(self, t: Tensor, x: Tensor) -> Tensor:
        return torch.trace(self.a).expand(x.shape[0]) * 0.5


def test_wrong_tableau_is_caught() -> None:
    with pytest.raises(ConformanceError) as info:
        check_integrator(WrongRK4, target=1e-5)
    assert info.value.property in {"accuracy", "convergence order"}
    assert "WrongRK4 breaks" in str(info.value)


def test_wrong_tableau_fails_the_order_check_specifically() -> None:
    with pytest.raises(ConformanceError, match="breaks 'convergence order': measured order"):
        check_integrator(WrongRK4, target=1e-1)


def test_cheating_adaptive_integrator_is_caught() -> None:
    """The step-count-scaled accuracy bound admits the cheat (6e-3 against a bound
    of e^2 * 2000 * 2e-6 = 0.03); its error does not follow the tolerance."""
    with pytest.raises(ConformanceError) as info:
        check_integrator(CheatingEuler, target=1e-6)
    assert info.value.property == "tolerance proportionality"
    assert "CheatingEuler breaks 'tolerance proportionality'" in str(info.value)


def test_over_reported_steps_do_not_raise_the_accuracy_bound() -> None:
    with pytest.raises(ConformanceError) as info:
        check_integrator(OverReportingEuler, target=1e-6)
    assert info.value.property == "accuracy"


class Dopri5DeclaredSixthOrder(Dopri5):
    """Dopri5 declaring order 6: the cost band cannot tell 5 from 6, the pinned steps can."""

    order: ClassVar[int] = 6


def test_adaptive_integrator_one_order_too_high_is_caught_at_pinned_steps() -> None:
    with pytest.raises(ConformanceError, match=r"breaks 'convergence order': measured order 5\.1"):
        check_integrator(Dopri5DeclaredSixthOrder, target=1e-5)


def test_adaptive_integrator_below_its_declared_order_is_caught() -> None:
    with pytest.raises(ConformanceError, match="breaks 'convergence order': function evaluations"):
        check_integrator(Bosh3DeclaredFifthOrder, target=1e-5)


@pytest.mark.parametrize(
    "name", ["dopri5", "bosh3", "tsit5", "adaptive_heun", "torchdiffeq.dopri5"]
)
def test_correct_adaptive_integrators_pass_the_tolerance_sweep(name: str) -> None:
    if ("integrator", name) not in REGISTRY:
        pytest.skip(f"{name} is not installed")
    checked = check_integrator(name, target=1e-6)
    assert {"tolerance proportionality", "convergence order"} <= set(checked)


def test_divergence_without_graph_is_a_conformance_error() -> None:
    with pytest.raises(ConformanceError) as info:
        check_trace_estimator(DetachedExactTrace)
    assert info.value.property == "differentiable"
    assert "DetachedExactTrace breaks 'differentiable'" in str(info.value)
    assert "no autograd graph" in str(info.value)


def test_trace_off_by_a_factor_is_caught() -> None:
    with pytest.raises(ConformanceError, match="ScaledExactTrace breaks 'value'"):
        check_trace_estimator(ScaledExactTrace)


def test_adjoint_dropping_a_term_is_caught() -> None:
    with pytest.raises(ConformanceError, match=r"breaks 'gradient': gradient w.r.t. A"):
        check_gradient_strategy(ParameterlessAdjoint)


def test_field_mixing_rows_is_caught() -> None:
    with pytest.raises(ConformanceError, match="LeakyField breaks 'rows independent'"):
        check_vector_field(LeakyField)


def test_wrong_divergence_is_caught() -> None:
    with pytest.raises(ConformanceError, match="breaks 'divergence'"):
        check_vector_field(WrongDivergenceField)
