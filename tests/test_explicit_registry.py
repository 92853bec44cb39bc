"""An explicit registry is honoured everywhere; names are resolved only at the edges.

With the global registry's builder made to raise, a CNF, a composition of
CNFs, ``odeint`` and ``solve`` built with an explicit registry resolve every
name in it, down to the adjoint's backward integrator given by name: no
global registry is built. The backward integrator used here exists only in
the explicit registry, so resolving it anywhere else would fail too.
"""

from __future__ import annotations

from typing import ClassVar

import pytest
import torch
from flowkit.plugins.gradients import Adjoint, Backprop
from flowkit.plugins.native_integrators import RK4Classic
from torch import Tensor

from flowkit import CNF, compose, hookimpl, odeint
from flowkit.registry import Registry, build_registry, global_registry
from flowkit.solution import Solution, SolverStats
from flowkit.solve import solve
from flowkit.state import Dynamics, State
from flowkit.testing.tolerances import integrator_tolerance

RK4_TOL = integrator_tolerance(torch.float64, order=4, adaptive=False, step_size=1 / 8)


class CountingRK4(RK4Classic):
    """RK4 that counts its solves, to show where a backward solve ran."""

    calls: ClassVar[int] = 0

    def integrate(self, func: Dynamics, y0: State, t: Tensor, **kwargs: object) -> Solution:
        type(self).calls += 1
        return super().integrate(func, y0, t, **kwargs)


class _ProbePlugin:
    @hookimpl
    def flowkit_register_integrators(self, register: object) -> None:
        register("probe_rk4", CountingRK4)  # type: ignore[operator]


def _global_build_refused(**_: object) -> Registry:
    raise AssertionError("the global registry was built although an explicit one was given")


@pytest.fixture
def explicit() -> Registry:
    return build_registry(autoload=False, blocked=(), plugins=[("probe", _ProbePlugin())])


@pytest.fixture
def no_global(monkeypatch: pytest.MonkeyPatch) -> None:
    """Forget the global registry and make building it fail."""
    monkeypatch.setattr(global_registry, "_REGISTRY", None)
    monkeypatch.setattr(global_registry, "build_registry", _global_build_refused)


def _cnf(registry: Registry, gradient: object = "adjoint", **gradient_options: object) -> CNF:
    return CNF(
        "mlp",
        "rk4",
        "hutchinson",
        gradient,  # type: ignore[arg-type]
        dim=2,
        field_options={"hidden": (8,)},
        integrator_options={"n_steps": 3},
        gradient_options=gradient_options or None,
        seed=0,
        registry=registry,
    )


def _backward_runs_probe(model: torch.nn.Module, loss: Tensor) -> None:
    before = CountingRK4.calls
    loss.backward()
    assert CountingRK4.calls > before, "the backward solve did not use the named integrator"
    grads = [p.grad for p in model.parameters()]
    assert grads and all(g is not None and bool(torch.isfinite(g).all()) for g in grads)


@pytest.mark.usefixtures("no_global")
def test_cnf_resolves_every_name_in_its_registry(explicit: Registry) -> None:
    model = _cnf(explicit, backward_integrator="probe_rk4", backward_options={"n_steps": 4})
    x = torch.randn(5, 2, generator=torch.Generator().manual_seed(1))
    _backward_runs_probe(model, -model.log_prob(x).mean())
    assert model.last_stats is not None and model.last_stats.backward_nfe > 0
    assert model.sample(3).shape == (3, 2)
    samples, logp = model.sample_with_log_prob(3)
    assert samples.shape == (3, 2) and logp.shape == (3,)
    assert global_registry._REGISTRY is None


@pytest.mark.usefixtures("no_global")
def test_an_adjoint_instance_gets_the_registry_of_its_cnf(explicit: Registry) -> None:
    strategy = Adjoint(backward_integrator="probe_rk4", backward_options={"n_steps": 2})
    model = _cnf(explicit, strategy)
    assert strategy.registry is explicit
    _backward_runs_probe(model, -model.log_prob(torch.ones(4, 2)).mean())


@pytest.mark.usefixtures("no_global")
def test_a_composition_uses_its_blocks_registries(explicit: Registry) -> None:
    blocks = [_cnf(explicit, backward_integrator="probe_rk4") for _ in range(2)]
    model = compose(*blocks)
    _backward_runs_probe(model, -model.log_prob(torch.ones(4, 2)).mean())
    stats = model.last_stats
    assert stats is not None and stats.backward_nfe == sum(
        b.last_stats.backward_nfe for b in blocks if b.last_stats is not None
    )


@pytest.mark.usefixtures("no_global")
def test_odeint_and_solve_resolve_names_in_the_registry_given(explicit: Registry) -> None:
    a = torch.tensor([[-0.5, 1.0], [-1.0, -0.5]])
    y0 = torch.tensor([[1.0, 0.0]], requires_grad=True)
    t = torch.tensor([0.0, 1.0])
    ys = odeint(
        lambda _t, y: y @ a.T,
        y0,
        t,
        method="probe_rk4",
        gradient="adjoint",
        adjoint_params=(),  # the closure's tensors need no gradient
        options={"n_steps": 8},
        registry=explicit,
    )
    expected = y0 @ torch.linalg.matrix_exp(a).T
    RK4_TOL.assert_close(ys[-1], expected, "y(1)")
    before = CountingRK4.calls
    ys[-1].sum().backward()
    assert CountingRK4.calls > before
    assert y0.grad is not None  # d sum(y(1)) / d y0 = 1^T expm(A)
    RK4_TOL.assert_close(y0.grad, torch.linalg.matrix_exp(a).sum(0, keepdim=True), "dL/dy0")

    sol = solve(
        lambda _t, y: -y,
        torch.ones(1, 2),
        t,
        integrator="probe_rk4",
        gradient="backprop",
        integrator_options={"n_steps": 8},
        registry=explicit,
    )
    RK4_TOL.assert_close(
        sol.final, torch.full((1, 2), float(torch.exp(torch.tensor(-1.0)))), "y(1)"
    )


@pytest.mark.usefixtures("no_global")
def test_solve_with_instances_needs_no_registry() -> None:
    sol = solve(
        lambda _t, y: -y,
        torch.ones(1, 2),
        [0.0, 1.0],
        integrator=RK4Classic(n_steps=8),
        gradient=Backprop(),
    )
    assert sol.stats.nfe == 32
    assert global_registry._REGISTRY is None


def test_an_adjoint_without_registry_says_how_to_resolve_a_name() -> None:
    strategy = Adjoint(backward_integrator="rk4")
    y0 = torch.ones(1, 2, requires_grad=True)
    with pytest.raises(TypeError, match="has no registry to resolve it in: pass registry="):
        strategy.solve(RK4Classic(n_steps=2), lambda _t, y: -y, y0, torch.tensor([0.0, 1.0]))


def test_registry_option_given_explicitly_wins(explicit: Registry) -> None:
    other = build_registry(autoload=False, blocked=())
    built = explicit.create("gradient_strategy", "adjoint", registry=other)
    assert built.registry is other
    assert explicit.create("gradient_strategy", "adjoint").registry is explicit


def test_solver_stats_total_sums_counts_and_keeps_a_failure() -> None:
    first = SolverStats(nfe=3, n_accepted=2, n_rejected=1, backward_nfe=5, backward_n_accepted=4)
    second = SolverStats(nfe=4, n_accepted=1, backward_n_rejected=2, status="max_steps_reached")
    total = SolverStats.total([first, None, second])
    assert total is not None
    assert (total.nfe, total.n_accepted, total.n_rejected) == (7, 3, 1)
    assert (total.backward_nfe, total.backward_n_accepted, total.backward_n_rejected) == (5, 4, 2)
    assert total.status == "max_steps_reached"
    assert SolverStats.total([None, None]) is None
    assert SolverStats.total([first]) == SolverStats(
        nfe=3, n_accepted=2, n_rejected=1, backward_nfe=5, backward_n_accepted=4
    )


def test_a_composition_has_no_single_data_time(explicit: Registry) -> None:
    model = compose(_cnf(explicit, "backprop"))
    with pytest.raises(TypeError, match="no single data time t1"):
        model.log_prob_and_regularization(torch.ones(2, 2), t1=0.5)


def test_the_suite_registry_holds_the_builtins_only(registry: Registry) -> None:
    """Installed plugins do not change the test suite: no entry point is loaded."""
    assert {spec.distribution for spec in registry.specs()} == {"flowkit"}
    assert global_registry.get_registry() is registry  # what CNF(...) without registry= uses
