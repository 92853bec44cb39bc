"""``flowkit.odeint_event``: torchdiffeq's call, closed-form event times and their gradients.

Closed form (float64): ``y' = -k y`` from ``y0`` at ``t0`` reaches ``c`` at
``t* = t0 + ln(y0 / c) / k``, so ``dt*/dy0 = 1/(k y0)``,
``dt*/dk = -ln(y0/c)/k**2``, ``dt*/dc = -1/(k c)`` and ``dt*/dt0 = 1``.
The same calls are compared with ``torchdiffeq.odeint_event``.
"""

from __future__ import annotations

import math

import pytest
import torch
import torchdiffeq
from hypothesis import given
from hypothesis import strategies as st
from torch import Tensor, nn

import flowkit
from flowkit import EventNotFoundError, odeint_event
from flowkit.errors import IntegrationError

F64 = torch.float64
TOL = {"rtol": 1e-10, "atol": 1e-10}


def _leaf(value: float) -> Tensor:
    return torch.tensor(value, dtype=F64, requires_grad=True)


class Decay(nn.Module):
    """``y' = -k y`` on every leaf of a tensor or tuple state."""

    def __init__(self, k: float = 1.5) -> None:
        super().__init__()
        self.k = nn.Parameter(torch.tensor(k, dtype=F64))

    def forward(self, t: Tensor, y: Tensor | tuple[Tensor, ...]) -> Tensor | tuple[Tensor, ...]:
        if isinstance(y, tuple):
            return tuple(-self.k * leaf for leaf in y)
        return -self.k * y


class Pendulum(nn.Module):
    """A damped, driven pendulum ``(theta, omega)``: no closed form, compared with torchdiffeq."""

    def __init__(self) -> None:
        super().__init__()
        self.damping = nn.Parameter(torch.tensor(0.3, dtype=F64))
        self.drive = nn.Parameter(torch.tensor(0.5, dtype=F64))

    def forward(self, t: Tensor, y: Tensor) -> Tensor:
        theta, omega = y[..., 0], y[..., 1]
        accel = -torch.sin(theta) - self.damping * omega + self.drive * torch.cos(t)
        return torch.stack([omega, accel], dim=-1)


@pytest.mark.parametrize("tuple_state", [False, True], ids=["tensor", "tuple"])
@pytest.mark.parametrize("reverse_time", [False, True], ids=["forward", "reverse"])
def test_event_time_and_gradients_match_closed_form(tuple_state: bool, reverse_time: bool) -> None:
    func = Decay()
    y0_value, c_value, t0_value = (0.25, 0.5, 0.3) if reverse_time else (1.0, 0.5, 0.3)
    y0, c, t0 = _leaf(y0_value), _leaf(c_value), _leaf(t0_value)
    state = (y0.reshape(1), torch.ones(2, dtype=F64)) if tuple_state else y0.reshape(1)

    def event_fn(t: Tensor, y: Tensor | tuple[Tensor, ...]) -> Tensor:
        first = y[0] if tuple_state else y
        return first[0] - c

    event_t, ys = odeint_event(func, state, t0, event_fn=event_fn, reverse_time=reverse_time, **TOL)
    k = 1.5
    exact = t0_value + math.log(y0_value / c_value) / k
    assert (event_t.item() < t0_value) == reverse_time
    assert event_t.item() == pytest.approx(exact, abs=1e-9)
    first = ys[0] if tuple_state else ys
    assert first.shape == (2, 1)
    assert first[0].item() == y0_value
    assert first[-1].item() == pytest.approx(c_value, abs=1e-9)
    if tuple_state:  # the other leaf decays over the same time
        expected = math.exp(-k * (exact - t0_value))
        torch.testing.assert_close(ys[1][-1], torch.full((2,), expected, dtype=F64))
    event_t.backward()
    assert y0.grad.item() == pytest.approx(1 / (k * y0_value), rel=1e-7)
    assert func.k.grad.item() == pytest.approx(-math.log(y0_value / c_value) / k**2, rel=1e-7)
    assert c.grad.item() == pytest.approx(-1 / (k * c_value), rel=1e-7)  # torchdiffeq: no grad
    assert t0.grad.item() == pytest.approx(1.0, rel=1e-7)


@given(
    k=st.floats(0.2, 3.0),
    y0_value=st.floats(0.6, 5.0),
    fraction=st.floats(0.05, 0.95),
    t0_value=st.floats(-2.0, 2.0),
    reverse_time=st.booleans(),
)
def test_drawn_decays_match_closed_form(
    k: float, y0_value: float, fraction: float, t0_value: float, reverse_time: bool
) -> None:
    # Forward the state decays to y0 * fraction; backward it grows to y0 / fraction.
    c_value = y0_value / fraction if reverse_time else y0_value * fraction
    func = Decay(k)
    y0 = _leaf(y0_value)
    event_t, _ = odeint_event(
        func,
        y0.reshape(1),
        torch.tensor(t0_value, dtype=F64),
        event_fn=lambda t, y: y[0] - c_value,
        reverse_time=reverse_time,
        **TOL,
    )
    exact = t0_value + math.log(y0_value / c_value) / k
    assert event_t.item() == pytest.approx(exact, abs=1e-8)
    event_t.backward()
    assert y0.grad.item() == pytest.approx(1 / (k * y0_value), rel=1e-6)
    assert func.k.grad.item() == pytest.approx(-math.log(y0_value / c_value) / k**2, rel=1e-6)


def test_state_at_event_moves_with_the_event_time() -> None:
    # y(t*) = c whatever y0 is: d y(t*)/d y0 = 0 and d y(t*)/dc = 1.
    y0, c = _leaf(1.0), _leaf(0.5)
    _, ys = odeint_event(
        Decay(), y0.reshape(1), torch.tensor(0.0, dtype=F64), event_fn=lambda t, y: y[0] - c, **TOL
    )
    ys[-1, 0].backward()
    assert y0.grad.item() == pytest.approx(0.0, abs=1e-8)
    assert c.grad.item() == pytest.approx(1.0, rel=1e-7)


def _pendulum_event(solvers: object, reverse_time: bool) -> tuple[float, list[float]]:
    func = Pendulum()
    y0 = torch.tensor([1.0, 0.0], dtype=F64, requires_grad=True)
    t0 = torch.tensor(0.0, dtype=F64)
    event_t, ys = solvers.odeint_event(  # type: ignore[attr-defined]
        func, y0, t0, event_fn=lambda t, y: y[0], reverse_time=reverse_time, **TOL
    )
    (event_t + ys[-1, 1]).backward()
    grads = [*y0.grad.tolist(), func.damping.grad.item(), func.drive.grad.item()]
    return event_t.item(), grads


@pytest.mark.parametrize("reverse_time", [False, True], ids=["forward", "reverse"])
def test_matches_torchdiffeq_event_time_and_gradients(reverse_time: bool) -> None:
    event_t, grads = _pendulum_event(flowkit, reverse_time)
    ref_t, ref_grads = _pendulum_event(torchdiffeq, reverse_time)
    assert event_t == pytest.approx(ref_t, abs=1e-8)
    assert grads == pytest.approx(ref_grads, rel=1e-6, abs=1e-8)


def test_tuple_state_matches_torchdiffeq() -> None:
    def run(solvers: object) -> tuple[float, list[float]]:
        func = Decay(0.7)
        y0 = (torch.tensor([2.0], dtype=F64, requires_grad=True), torch.tensor([3.0], dtype=F64))
        event_t, ys = solvers.odeint_event(  # type: ignore[attr-defined]
            func,
            y0,
            torch.tensor(0.0, dtype=F64),
            event_fn=lambda t, y: y[0][0] + y[1][0] - 1,
            **TOL,
        )
        (event_t + ys[1][-1].sum()).backward()
        return event_t.item(), [y0[0].grad.item(), func.k.grad.item()]

    event_t, grads = run(flowkit)
    ref_t, ref_grads = run(torchdiffeq)
    assert event_t == pytest.approx(ref_t, abs=1e-8)
    assert grads == pytest.approx(ref_grads, rel=1e-6)


def test_vector_event_function_stops_at_the_first_zero_of_any_element() -> None:
    # y0 = 1 decays at k = 1.5; elements reach zero at y = 0.5 (t = ln 2/1.5) and y = 0.8.
    def event_fn(t: Tensor, y: Tensor) -> Tensor:
        return torch.stack([y[0] - 0.5, 0.8 - y[0]])  # the second starts negative

    y0 = torch.tensor([1.0], dtype=F64)
    event_t, _ = odeint_event(Decay(), y0, torch.tensor(0.0, dtype=F64), event_fn=event_fn, **TOL)
    ref_t, _ = torchdiffeq.odeint_event(
        Decay(), y0, torch.tensor(0.0, dtype=F64), event_fn=event_fn, **TOL
    )
    assert event_t.item() == pytest.approx(math.log(1 / 0.8) / 1.5, abs=1e-9)
    assert event_t.item() == pytest.approx(ref_t.item(), abs=1e-8)


def test_adjoint_gradient_equals_backprop() -> None:
    def grads(**kwargs: object) -> list[float]:
        func = Pendulum()
        y0 = torch.tensor([1.0, 0.0], dtype=F64, requires_grad=True)
        event_t, ys = odeint_event(
            func, y0, torch.tensor(0.0, dtype=F64), event_fn=lambda t, y: y[0], **TOL, **kwargs
        )
        (event_t + ys[-1, 1]).backward()
        return [*y0.grad.tolist(), func.damping.grad.item(), func.drive.grad.item()]

    assert grads(gradient="adjoint") == pytest.approx(grads(), rel=1e-6, abs=1e-9)


def test_adjoint_interface_matches_torchdiffeq() -> None:
    def run(solvers: object) -> tuple[float, list[float]]:
        func = Pendulum()
        y0 = torch.tensor([1.0, 0.0], dtype=F64, requires_grad=True)
        event_t, _ = solvers.odeint_event(  # type: ignore[attr-defined]
            func,
            y0,
            torch.tensor(0.0, dtype=F64),
            event_fn=lambda t, y: y[0],
            odeint_interface=solvers.odeint_adjoint,  # type: ignore[attr-defined]
            **TOL,
        )
        event_t.backward()
        return event_t.item(), [*y0.grad.tolist(), func.damping.grad.item()]

    flow_t, flow_grads = run(flowkit)
    ref_t, ref_grads = run(torchdiffeq)
    assert flow_t == pytest.approx(ref_t, abs=1e-8)
    assert flow_grads == pytest.approx(ref_grads, rel=1e-6, abs=1e-9)


def test_fixed_step_method_with_its_options() -> None:
    y0 = torch.tensor([1.0], dtype=F64)
    event_t, _ = odeint_event(
        Decay(),
        y0,
        torch.tensor(0.0, dtype=F64),
        event_fn=lambda t, y: y[0] - 0.5,
        method="rk4",
        options={"step_size": 0.01},
    )
    # With step_size, flowkit.odeint follows torchdiffeq: times between steps are read
    # off the linear interpolant of the steps, so the event is located to the
    # interpolation error, not to rk4's: |y - y_lin| <= h^2 max|y''| / 8 in y, divided
    # by |y'| = 0.75 at the event in t (y = exp(-1.5 t), |y''| <= 2.25).
    bound = 0.01**2 * 2.25 / 8 / 0.75
    assert abs(event_t.item() - math.log(2) / 1.5) <= bound


def test_float32_state_and_python_float_t0() -> None:
    y0 = torch.tensor([1.0], dtype=torch.float32)
    event_t, ys = odeint_event(
        lambda t, y: -y, y0, 0.0, event_fn=lambda t, y: y[0] - 0.5, rtol=1e-6, atol=1e-7
    )
    assert event_t.dtype == torch.float32 and ys.dtype == torch.float32
    assert event_t.item() == pytest.approx(math.log(2), abs=1e-5)


def test_event_tol_sets_the_accuracy_of_the_event_time() -> None:
    y0 = torch.tensor([1.0], dtype=F64)
    coarse, _ = odeint_event(
        lambda t, y: -y, y0, torch.tensor(0.0, dtype=F64), event_fn=lambda t, y: y[0] - 0.5,
        event_tol=1e-3, **TOL,
    )  # fmt: skip
    assert abs(coarse.item() - math.log(2)) <= 0.5e-3
    assert abs(coarse.item() - math.log(2)) > 1e-9  # the search did stop early


def test_event_at_t0_returns_t0_and_the_initial_state() -> None:
    y0 = torch.tensor([0.5], dtype=F64, requires_grad=True)
    t0 = torch.tensor(0.2, dtype=F64)
    event_t, ys = odeint_event(lambda t, y: -y, y0, t0, event_fn=lambda t, y: y[0] - 0.5)
    ref_t, ref_ys = torchdiffeq.odeint_event(
        lambda t, y: -y, y0, t0, event_fn=lambda t, y: y[0] - 0.5
    )
    assert event_t.item() == ref_t.item() == 0.2
    torch.testing.assert_close(ys, ref_ys)


def test_without_gradients() -> None:
    y0 = torch.tensor([1.0], dtype=F64, requires_grad=True)
    with torch.no_grad():
        event_t, ys = odeint_event(
            lambda t, y: -y,
            y0,
            torch.tensor(0.0, dtype=F64),
            event_fn=lambda t, y: y[0] - 0.5,
            **TOL,
        )
    assert not event_t.requires_grad and not ys.requires_grad
    assert event_t.item() == pytest.approx(math.log(2), abs=1e-9)


def test_oscillation_faster_than_the_search_grid_stops_at_its_first_zero() -> None:
    # y'' = -w^2 y, y(0) = 1: the first zero is at pi / (2 w) = 0.0079, a quarter of one
    # interval of the first search grid; the solver's own steps are finer and are searched.
    w = 200.0
    y0 = torch.tensor([1.0, 0.0], dtype=F64, requires_grad=True)

    def oscillator(t: Tensor, y: Tensor) -> Tensor:
        return torch.stack([y[1], -(w**2) * y[0]])

    event_t, _ = odeint_event(
        oscillator, y0, torch.tensor(0.0, dtype=F64), event_fn=lambda t, y: y[0], **TOL
    )
    ref_t, _ = torchdiffeq.odeint_event(
        oscillator, y0, torch.tensor(0.0, dtype=F64), event_fn=lambda t, y: y[0], **TOL
    )
    assert event_t.item() == pytest.approx(math.pi / (2 * w), abs=1e-9)
    assert event_t.item() == pytest.approx(ref_t.item(), abs=1e-9)
    # t* = (pi/2 + atan(v0 / (w y0))) / w: at v0 = 0, dt*/dy0 = 0 and dt*/dv0 = 1 / (w^2 y0).
    event_t.backward()
    assert y0.grad[0].item() == pytest.approx(0.0, abs=1e-9)
    assert y0.grad[1].item() == pytest.approx(1.0 / w**2, rel=1e-6)


# --- error paths ---------------------------------------------------------------------------


def _call(**overrides: object) -> tuple[Tensor, Tensor]:
    arguments: dict[str, object] = {
        "func": lambda t, y: -y,
        "y0": torch.tensor([1.0], dtype=F64),
        "t0": torch.tensor(0.0, dtype=F64),
        "event_fn": lambda t, y: y[0] - 0.5,
    }
    arguments.update(overrides)
    return odeint_event(**arguments)  # type: ignore[arg-type]


def test_event_never_reached_raises() -> None:
    with pytest.raises(EventNotFoundError, match="never reached zero") as info:
        _call(func=lambda t, y: torch.zeros_like(y))
    assert info.value.t is not None and info.value.t > 1e6
    assert "reverse_time=True" in str(info.value)


def test_t0_with_several_times_raises() -> None:
    with pytest.raises(ValueError, match="t0 must be a single time"):
        _call(t0=torch.tensor([0.0, 1.0], dtype=F64))


def test_event_fn_not_callable_or_not_returning_a_tensor_raises() -> None:
    with pytest.raises(TypeError, match="event_fn must be callable"):
        _call(event_fn=0.5)
    with pytest.raises(TypeError, match="event_fn\\(t, y\\) must return a tensor"):
        _call(event_fn=lambda t, y: 0.5)


def test_bad_reverse_time_or_event_tol_raises() -> None:
    with pytest.raises(TypeError, match="reverse_time must be True or False"):
        _call(reverse_time="yes")
    with pytest.raises(ValueError, match="event_tol must be a positive number"):
        _call(event_tol=0.0)


def test_non_finite_event_value_raises() -> None:
    with pytest.raises(IntegrationError, match="event_fn returned nan"):
        _call(event_fn=lambda t, y: torch.where(t < 0.5, 1.0, float("nan")) + 0 * y[0])


def test_event_without_derivative_raises_only_when_gradients_are_needed() -> None:
    def step(t: Tensor, y: Tensor) -> Tensor:  # jumps from 1 to -1 at t = 0.5: dc/dt = 0
        return torch.where(t < 0.5, 1.0, -1.0) + 0 * y[0]

    y0 = torch.tensor([1.0], dtype=F64, requires_grad=True)
    with pytest.raises(ValueError, match="has no derivative"):
        _call(y0=y0, event_fn=step)
    with torch.no_grad():
        event_t, _ = _call(y0=y0, event_fn=step)
    assert event_t.item() == pytest.approx(0.5, abs=1e-9)


def test_unknown_option_of_the_interface_raises() -> None:
    with pytest.raises(TypeError):
        _call(options={"no_such_option": 1})


def test_odeint_with_event_fn_returns_the_event_like_torchdiffeq() -> None:
    """``odeint(func, y0, t, event_fn=...)`` solves from ``t[0]`` to the event, as torchdiffeq."""
    y0 = torch.tensor([1.0], dtype=F64)
    t = torch.tensor([0.0, 5.0], dtype=F64)

    def event(t: Tensor, y: Tensor) -> Tensor:
        return y[0] - 0.5

    event_t, ys = flowkit.odeint(Decay(), y0, t, event_fn=event)
    ref_t, ref_ys = torchdiffeq.odeint(Decay(), y0, t, event_fn=event)
    assert event_t.item() == pytest.approx(math.log(2) / 1.5, abs=1e-8)
    assert event_t.item() == pytest.approx(ref_t.item(), abs=1e-6)
    assert ys.shape == ref_ys.shape == (2, 1)
    assert ys[-1].item() == pytest.approx(0.5, abs=1e-7)  # the default rtol, 1e-7
    with pytest.raises(TypeError, match="odeint_solution takes no event_fn"):
        flowkit.odeint_solution(Decay(), y0, t, event_fn=event)
