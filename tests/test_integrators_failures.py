"""Failure modes of every registered integrator, plus gradient paths the integrators offer
(checkpointed steps, torchsde's reversible adjoint, torchdiffeq's native adjoint)."""

from __future__ import annotations

import math

import pytest
import torch
from integrator_helpers import INTEGRATORS, fixed_step_options, run, spec, tolerance_options
from registry_helpers import suite_registry

from flowkit.errors import (
    IntegrationError,
    MaxStepsExceededError,
    NonFiniteStateError,
    StepSizeUnderflowError,
)
from flowkit.testing.problems import exponential_decay, tuple_rotation
from flowkit.testing.tolerances import integrator_tolerance

ADAPTIVE = [n for n in INTEGRATORS if spec(n).capabilities["adaptive"]]
NATIVE_ADAPTIVE = [n for n in ADAPTIVE if spec(n).plugin == "native_integrators"]


def _default_options(name: str) -> dict:
    if spec(name).capabilities["adaptive"]:
        return tolerance_options(name, 1e-6)
    return fixed_step_options(name, 0.05) or {}


def blow_up(t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """y' = y^2, y(0) = 1: y = 1/(1 - t) blows up at t = 1."""
    return y * y


@pytest.mark.parametrize("name", INTEGRATORS)
def test_unknown_option_is_a_type_error(name: str) -> None:
    with pytest.raises(TypeError, match="not_an_option"):
        suite_registry().create("integrator", name, not_an_option=1)


@pytest.mark.parametrize("name", INTEGRATORS)
def test_nan_in_field_output_names_the_time(name: str) -> None:
    def poisoned(t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return -y if float(t) < 0.5 else y * float("nan")

    y0 = torch.ones(3)
    with pytest.raises(NonFiniteStateError) as info:
        run(name, poisoned, y0, torch.tensor([0.0, 1.0]), **_default_options(name))
    # Native and torchsde name the start of the failing step (at most 0.5); torchdiffeq
    # names its last evaluation time or the first bad output time (within one step).
    limit = 0.5 + 1e-9 if spec(name).plugin != "torchdiffeq" else 1.0 + 0.7
    assert info.value.t is not None and 0.0 <= info.value.t <= limit
    assert "t=" in str(info.value)


@pytest.mark.parametrize("name", INTEGRATORS)
def test_nan_in_initial_state(name: str) -> None:
    y0 = torch.tensor([1.0, float("inf")])
    with pytest.raises(NonFiniteStateError):
        run(name, lambda t, y: -y, y0, torch.tensor([0.0, 1.0]), **_default_options(name))


def _order_tolerance(name: str, low: float, high: float) -> float:
    """``low`` for methods of order 3 or less, ``high`` otherwise: near a pole (or
    at a tight tolerance) low orders take ``tol**(-1/order)`` times more steps."""
    return low if spec(name).capabilities["order"] <= 3 else high


@pytest.mark.parametrize("name", ADAPTIVE)
def test_step_size_underflow_near_a_singularity(name: str) -> None:
    tol = _order_tolerance(name, 1e-4, 1e-6)
    y0 = torch.ones(1)
    with pytest.raises((StepSizeUnderflowError, NonFiniteStateError)) as info:
        run(name, blow_up, y0, torch.tensor([0.0, 2.0]), **tolerance_options(name, tol))
    # 1/y = 1 - t exactly, so a relative error e of y moves the numerical pole by
    # e (1 - t) <= e: the time reached is within the global error bound of 1.
    bound = integrator_tolerance(
        torch.float64, order=spec(name).capabilities["order"], adaptive=True, rtol=tol, atol=tol
    ).atol
    assert info.value.t is not None and abs(info.value.t - 1.0) <= bound, (info.value.t, bound)


@pytest.mark.parametrize("name", NATIVE_ADAPTIVE)
def test_min_step_raises_with_remedies(name: str) -> None:
    with pytest.raises(StepSizeUnderflowError) as info:
        run(
            name,
            blow_up,
            torch.ones(1),
            torch.tensor([0.0, 2.0]),
            rtol=1e-4,
            atol=1e-4,
            min_step=1e-5,
        )
    err = info.value
    assert 0.9 < err.t < 1.01
    text = str(err)
    assert "min_step" in text and f"t={err.t!r}" in text
    for remedy in ("loosen rtol/atol", "stiff-capable", "smaller time span"):
        assert remedy in text


@pytest.mark.parametrize("name", NATIVE_ADAPTIVE)
def test_max_steps_raise_and_return(name: str) -> None:
    p = exponential_decay()
    t = torch.tensor([0.0, 1.0, 2.0])
    with pytest.raises(MaxStepsExceededError) as info:
        run(name, p.func, p.y0, t, rtol=1e-10, atol=1e-10, max_steps=3)
    assert 0.0 < info.value.t < 2.0 and "max_steps=3" in str(info.value)
    sol = run(name, p.func, p.y0, t, rtol=1e-10, atol=1e-10, max_steps=3, on_max_steps="return")
    assert sol.stats.status == "max_steps_reached"
    assert sol.stats.t_reached == info.value.t
    assert float(sol.ts[-1]) == sol.stats.t_reached
    assert sol.ys.shape[0] == sol.ts.shape[0]
    # The partial state is the solution at the time reached.
    assert torch.allclose(sol.ys[-1], p.exact(sol.stats.t_reached), rtol=1e-6, atol=1e-8)


def test_fixed_step_max_steps() -> None:
    p = exponential_decay()
    with pytest.raises(MaxStepsExceededError):
        run("rk4", p.func, p.y0, p.times(2), n_steps=10, max_steps=4)
    sol = run("rk4", p.func, p.y0, p.times(2), n_steps=10, max_steps=4, on_max_steps="return")
    assert sol.stats.status == "max_steps_reached"
    assert math.isclose(sol.stats.t_reached, 0.8)


def test_torchdiffeq_max_num_steps_maps_to_flowkit_error() -> None:
    p = exponential_decay()
    with pytest.raises(MaxStepsExceededError):
        run("torchdiffeq.dopri5", p.func, p.y0, p.times(2), rtol=1e-10, atol=1e-10, max_num_steps=2)


def test_invalid_option_values() -> None:
    with pytest.raises(ValueError, match="on_max_steps"):
        suite_registry().create("integrator", "dopri5", on_max_steps="ignore")
    with pytest.raises(ValueError, match="rtol"):
        suite_registry().create("integrator", "dopri5", rtol=-1.0)
    with pytest.raises(TypeError, match="norm"):
        suite_registry().create("integrator", "dopri5", norm=3)


WITH_TOLERANCES = [n for n in INTEGRATORS if "rtol" in (spec(n).options() or ())]


@pytest.mark.parametrize("name", WITH_TOLERANCES)
@pytest.mark.parametrize(
    "rtol, atol, where",
    [
        (0.0, 0.0, ""),
        (0, 0, ""),
        (torch.zeros(2), 0.0, ""),
        ((1e-6, 0.0), (1e-9, 0.0), " for state leaf 1"),
        (torch.tensor([1e-6, 0.0]), torch.tensor([0.0, 0.0]), ""),
    ],
)
def test_zero_rtol_and_atol_are_rejected_up_front(
    name: str, rtol: object, atol: object, where: str
) -> None:
    # Before: the solve failed with "the field's output is NaN or Inf" (a fine field).
    with pytest.raises(ValueError, match=f"rtol and atol are both 0{where}: the error scale"):
        suite_registry().create("integrator", name, rtol=rtol, atol=atol)


@pytest.mark.parametrize("name", WITH_TOLERANCES)
def test_one_zero_tolerance_is_accepted(name: str) -> None:
    p = exponential_decay()
    for rtol, atol in ((0.0, 1e-6), (1e-6, 0.0)):
        sol = run(name, p.func, p.y0, p.times(2), rtol=rtol, atol=atol)
        bound = integrator_tolerance(
            torch.float64,
            order=spec(name).capabilities["order"],
            adaptive=True,
            rtol=rtol,
            atol=atol,
            n_steps=sol.stats.nfe,
        )
        torch.testing.assert_close(sol.ys[-1], p.exact(p.t1), rtol=bound.rtol, atol=bound.atol)


@pytest.mark.parametrize("name", NATIVE_ADAPTIVE)
@pytest.mark.parametrize("first_step", [None, 0.1])
def test_zero_error_scale_is_not_blamed_on_the_field(name: str, first_step: float | None) -> None:
    # atol = 0 and a component that stays 0: atol + rtol * |y| is 0 there.
    y0 = torch.tensor([1.0, 0.0], dtype=torch.float64)
    with pytest.raises(
        IntegrationError, match="error scale atol \\+ rtol \\* \\|y\\| is 0"
    ) as info:
        run(
            name,
            lambda t, y: -y,
            y0,
            torch.tensor([0.0, 1.0], dtype=torch.float64),
            rtol=1e-6,
            atol=0.0,
            first_step=first_step,
        )
    assert not isinstance(info.value, NonFiniteStateError)
    assert "NaN" not in str(info.value)


# -- gradients offered by the integrators themselves ----------------------------
CHECKPOINTABLE = [n for n in INTEGRATORS if spec(n).capabilities["checkpointable"]]


@pytest.mark.parametrize("name", CHECKPOINTABLE)
def test_checkpointed_gradients_equal_backprop(name: str) -> None:
    p = exponential_decay()
    t = torch.tensor([0.0, 0.7, 2.0])
    options = _default_options(name)
    integrator = suite_registry().create("integrator", name, **options)
    grads = []
    for checkpointed in (False, True):
        y0 = p.y0.clone().requires_grad_(True)
        if checkpointed:
            sol = integrator.integrate_checkpointed(p.func, y0, t, [p.param])
        else:
            sol = integrator.integrate(p.func, y0, t)
        (sol.ys.pow(2).sum()).backward()
        grads.append((y0.grad.clone(), p.param.grad.clone(), sol.stats.nfe))
        p.param.grad = None
    (gy_a, gk_a, nfe_a), (gy_b, gk_b, nfe_b) = grads
    assert nfe_a == nfe_b
    # The backward pass re-runs each accepted step once: at most the forward count.
    assert 0 < sol.stats.backward_nfe <= nfe_b
    torch.testing.assert_close(gy_a, gy_b, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(gk_a, gk_b, rtol=1e-12, atol=1e-14)


def test_checkpointed_tuple_state() -> None:
    p = tuple_rotation()
    integrator = suite_registry().create("integrator", "dopri5", rtol=1e-7, atol=1e-9)
    out = []
    for checkpointed in (False, True):
        x0 = p.y0[0].clone().requires_grad_(True)
        if checkpointed:
            sol = integrator.integrate_checkpointed(p.func, (x0, p.y0[1]), p.times(3), [])
        else:
            sol = integrator.integrate(p.func, (x0, p.y0[1]), p.times(3))
        (sol.ys[0].sum() + sol.ys[1].sum()).backward()
        out.append(x0.grad)
    torch.testing.assert_close(out[0], out[1], rtol=1e-12, atol=1e-14)


REVERSIBLE = [n for n in INTEGRATORS if spec(n).capabilities["reversible"]]


@pytest.mark.parametrize("name", REVERSIBLE)
def test_reversible_gradients_equal_backprop(name: str) -> None:
    p = exponential_decay()
    t = torch.tensor([0.0, 0.5, 2.0])
    integrator = suite_registry().create("integrator", name, **_default_options(name))
    results = []
    for reversible in (False, True):
        y0 = p.y0.clone().requires_grad_(True)
        if reversible:
            sol = integrator.integrate_reversible(p.func, y0, t, [p.param])
        else:
            sol = integrator.integrate(p.func, y0, t)
        (sol.ys.pow(2).sum()).backward()
        results.append((sol.ys.detach(), y0.grad.clone(), p.param.grad.clone()))
        p.param.grad = None
    for a, b in zip(results[0], results[1], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


NATIVE_ADJOINT = [n for n in INTEGRATORS if spec(n).capabilities["native_adjoint"]]


@pytest.mark.parametrize("name", [n for n in NATIVE_ADJOINT if spec(n).capabilities["adaptive"]])
def test_native_adjoint_gradient_matches_closed_form(name: str) -> None:
    tol = _order_tolerance(name, 1e-6, 1e-9)
    p = exponential_decay()
    integrator = suite_registry().create("integrator", name, rtol=tol, atol=tol)
    y0 = p.y0.clone().requires_grad_(True)
    sol = integrator.integrate_native_adjoint(p.func, y0, p.times(2), [p.param])
    sol.ys[-1].sum().backward()
    # The gradients solve the (linear, unit-scale) adjoint system with the same
    # tolerance; the function evaluations bound the number of steps of the model.
    bound = integrator_tolerance(
        torch.float64,
        order=spec(name).capabilities["order"],
        adaptive=True,
        rtol=tol,
        atol=tol,
        n_steps=sol.stats.nfe,
    )
    bound.assert_close(p.param.grad, p.grad_param(p.t0, p.t1), "dL/dk")
    bound.assert_close(y0.grad, p.grad_y0(p.t0, p.t1), "dL/dy0")
    assert sol.stats.backward_nfe > 0
    p.param.grad = None
