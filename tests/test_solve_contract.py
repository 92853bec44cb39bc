"""The one solve path checks what an integrator plugin returns against its contract.

Fake integrators (defined here, registered in a fresh registry through the
ordinary hook, or passed as instances) return states without the time axis,
with NaN, in the wrong dtype, on the wrong (meta) device, with the wrong
structure, or no Solution at all; each must raise PluginContractError naming
the plugin and the broken contract, through ``solve``, ``odeint``-style calls
and ``CNF.log_prob``.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import Tensor

import flowkit
from flowkit.errors import FlowkitError, PluginContractError
from flowkit.hookspecs import hookimpl
from flowkit.interfaces import Integrator
from flowkit.registry import Registry, build_registry
from flowkit.solution import Solution, SolverStats
from flowkit.solve import solve
from flowkit.state import Dynamics, State, all_finite, as_tuple, like


class _Euler(Integrator):
    """A correct explicit Euler method (100 steps between output times)."""

    order = 1

    def integrate(self, func: Dynamics, y0: State, t: Tensor) -> Solution:
        y = as_tuple(y0)
        single = not isinstance(y0, tuple)
        outputs = [y]
        for a, b in zip(t[:-1].tolist(), t[1:].tolist(), strict=True):
            h = (b - a) / 100
            for k in range(100):
                tk = torch.tensor(a + k * h, dtype=t.dtype)
                f = as_tuple(func(tk, y[0] if single else y))
                y = tuple(yi + h * fi for yi, fi in zip(y, f, strict=True))
            outputs.append(y)
        ys = tuple(torch.stack([o[i] for o in outputs]) for i in range(len(y)))
        return Solution(ts=t, ys=like(y0, ys), stats=SolverStats(nfe=100 * (len(t) - 1)))


class DropsTimeAxis(_Euler):
    """Returns only the final state, without the time axis."""

    def integrate(self, func: Dynamics, y0: State, t: Tensor) -> Solution:
        sol = super().integrate(func, y0, t)
        return Solution(ts=t, ys=sol.final, stats=sol.stats)


class ReturnsNaN(_Euler):
    """Returns NaN states without raising NonFiniteStateError."""

    def integrate(self, func: Dynamics, y0: State, t: Tensor) -> Solution:
        sol = super().integrate(func, y0, t)
        ys = like(sol.ys, tuple(torch.full_like(y, float("nan")) for y in as_tuple(sol.ys)))
        return Solution(ts=t, ys=ys, stats=sol.stats)


class WrongDtype(_Euler):
    """Returns float32 states for a float64 problem."""

    def integrate(self, func: Dynamics, y0: State, t: Tensor) -> Solution:
        sol = super().integrate(func, y0, t)
        ys = like(sol.ys, tuple(y.float() for y in as_tuple(sol.ys)))
        return Solution(ts=t, ys=ys, stats=sol.stats)


class WrongDevice(_Euler):
    """Returns states on the meta device."""

    def integrate(self, func: Dynamics, y0: State, t: Tensor) -> Solution:
        sol = super().integrate(func, y0, t)
        ys = like(sol.ys, tuple(y.to("meta") for y in as_tuple(sol.ys)))
        return Solution(ts=t, ys=ys, stats=sol.stats)


class WrongStructure(_Euler):
    """Returns a bare tensor for a tuple state."""

    def integrate(self, func: Dynamics, y0: State, t: Tensor) -> Solution:
        sol = super().integrate(func, y0, t)
        return Solution(ts=t, ys=as_tuple(sol.ys)[0], stats=sol.stats)


class NotASolution(_Euler):
    """Returns the bare states instead of a Solution."""

    def integrate(self, func: Dynamics, y0: State, t: Tensor) -> Solution:
        return super().integrate(func, y0, t).ys  # type: ignore[return-value]


BROKEN: dict[str, tuple[type[Integrator], str]] = {
    "drops_time_axis": (DropsTimeAxis, r"shape \(len\(t\), \*y0\.shape\) = \(3, 3, 2\).*\(3, 2\)"),
    "returns_nan": (ReturnsNaN, "must be finite.*NonFiniteStateError"),
    "wrong_dtype": (WrongDtype, r"must have y0.s dtype torch.float64.*torch.float32"),
    "wrong_device": (WrongDevice, r"must be on y0.s device cpu.*meta"),
}


class _BrokenPlugin:
    @hookimpl
    def flowkit_register_integrators(self, register: Callable[..., None]) -> None:
        register("euler_ok", _Euler)
        for name, (cls, _) in BROKEN.items():
            register(name, cls)
        register("wrong_structure", WrongStructure)
        register("not_a_solution", NotASolution)


@pytest.fixture(scope="module")
def registry() -> Registry:
    return build_registry(autoload=False, plugins=[("broken_plugin", _BrokenPlugin())])


def _decay(t: Tensor, y: Tensor) -> Tensor:
    return -y


def _y0() -> Tensor:
    return torch.arange(6, dtype=torch.float64).reshape(3, 2) / 6


def test_a_correct_plugin_passes_the_checks(registry: Registry) -> None:
    t = torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64)
    sol = solve(_decay, _y0(), t, integrator="euler_ok", registry=registry)
    assert sol.ys.shape == (3, 3, 2)
    exact = torch.exp(-t).reshape(3, 1, 1) * _y0()
    torch.testing.assert_close(sol.ys, exact, rtol=1e-2, atol=0.0)  # Euler, h = 0.005


@pytest.mark.parametrize("name", sorted(BROKEN))
@pytest.mark.parametrize("gradient", ["backprop", "adjoint"])
def test_broken_integrator_output_raises_naming_plugin_and_contract(
    registry: Registry, name: str, gradient: str
) -> None:
    t = torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64)
    pattern = BROKEN[name][1]
    with pytest.raises(PluginContractError, match=pattern) as info:
        solve(_decay, _y0(), t, integrator=name, gradient=gradient, registry=registry)
    message = str(info.value)
    assert f"Integrator {name!r}" in message and "integrator contract" in message
    assert f"gradient strategy {gradient!r}" in message
    assert info.value.component == name
    assert info.value.contract
    assert isinstance(info.value, FlowkitError)


def test_broken_integrator_instance_is_named_by_class() -> None:
    t = torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64)
    with pytest.raises(PluginContractError, match="Integrator DropsTimeAxis "):
        solve(_decay, _y0(), t, integrator=DropsTimeAxis())


def test_tuple_state_structure_and_non_solution_are_checked(registry: Registry) -> None:
    t = torch.tensor([0.0, 1.0], dtype=torch.float64)
    y0 = (_y0(), torch.zeros(3, dtype=torch.float64))

    def func(t: Tensor, y: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        return (-y[0], y[0].sum(1))

    with pytest.raises(PluginContractError, match=r"structure of y0 \(a tuple of 2 tensors"):
        solve(func, y0, t, integrator="wrong_structure", registry=registry)
    with pytest.raises(PluginContractError, match=r"must return a flowkit Solution.*Tensor"):
        solve(_decay, _y0(), t, integrator="not_a_solution", registry=registry)


def test_nan_in_one_leaf_of_a_tuple_state_is_caught() -> None:
    class NaNInSecondLeaf(_Euler):
        def integrate(self, func: Dynamics, y0: State, t: Tensor) -> Solution:
            sol = super().integrate(func, y0, t)
            x, d = as_tuple(sol.ys)
            return Solution(ts=t, ys=(x, d.clone().fill_(float("inf"))), stats=sol.stats)

    y0 = (_y0(), torch.zeros(3, dtype=torch.float64))

    def func(t: Tensor, y: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        return (-y[0], y[0].sum(1))

    with pytest.raises(PluginContractError, match="NaN or Inf"):
        solve(func, y0, torch.tensor([0.0, 1.0], dtype=torch.float64), integrator=NaNInSecondLeaf())


@pytest.mark.parametrize("integrator", [DropsTimeAxis(), ReturnsNaN()])
def test_cnf_log_prob_refuses_broken_integrator_output(integrator: Integrator) -> None:
    model = flowkit.CNF("linear", integrator, "exact", "backprop", dim=2).double()
    with pytest.raises(PluginContractError, match=type(integrator).__name__):
        model.log_prob(torch.zeros(3, 2, dtype=torch.float64))


def test_partial_solution_on_max_steps_is_accepted() -> None:
    t = torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64)
    sol = solve(
        _decay,
        _y0(),
        t,
        integrator="dopri5",
        integrator_options={"max_steps": 2, "on_max_steps": "return", "first_step": 0.1},
    )
    assert sol.stats.status == "max_steps_reached"
    assert sol.ys.shape[1:] == (3, 2) and sol.ys.shape[0] < 3


def test_all_finite_reads_past_an_overflowing_sum() -> None:
    """A finite state whose sum overflows is finite; NaN and Inf are not."""
    big = torch.full((4,), 3e38)  # float32: the sum is inf, every element finite
    assert all_finite((big,)) and all_finite((torch.zeros(0), torch.ones(2)))
    for bad in (float("nan"), float("inf"), -float("inf")):
        assert not all_finite((torch.ones(3), torch.tensor([1.0, bad])))
