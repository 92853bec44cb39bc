"""Gradients with respect to the output times ``t``, for every integrator and strategy.

The solve path attaches the continuous-time sensitivities ``dL/dt_i = g_i .
f(t_i, y_i)`` and ``dL/dt_0 = -a(t_0) . f(t_0, y_0)``. They are checked against
the closed form of ``y' = -y``, against ``torchdiffeq.odeint``'s ``t.grad`` on the
same call (tensor and tuple states, forward and reverse time, several output
times) and against flowkit's adjoint; the forward values and the gradients of
``y0`` and of the parameters must not change when ``t`` requires grad.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
import torchdiffeq
from torch import Tensor, nn

import flowkit
from flowkit.solve import solve

TIGHT = {"rtol": 1e-10, "atol": 1e-12}

# (integrator, gradient strategy, integrator options): every built-in strategy.
COMBINATIONS: list[tuple[str, str, dict[str, Any]]] = [
    ("dopri5", "backprop", TIGHT),
    ("rk4", "backprop", {"step_size": 1e-3}),
    ("dopri5", "adjoint", TIGHT),
    ("dopri5", "checkpoint", TIGHT),
    ("tsit5", "checkpoint", TIGHT),
    ("torchdiffeq.dopri5", "backprop", TIGHT),
    ("torchdiffeq.dopri5", "torchdiffeq_adjoint", TIGHT),
    ("torchsde.reversible_heun", "reversible", {"n_steps": 2000}),
]


class Decay(nn.Module):
    """``y' = -k y`` with a learnable rate ``k`` (1 by default)."""

    def __init__(self) -> None:
        super().__init__()
        self.k = nn.Parameter(torch.ones((), dtype=torch.float64))

    def forward(self, t: Tensor, y: Tensor) -> Tensor:
        return -self.k * y


@pytest.mark.parametrize(("integrator", "gradient", "options"), COMBINATIONS)
def test_closed_form_time_gradient_of_exponential_decay(
    integrator: str, gradient: str, options: dict[str, Any]
) -> None:
    # y(t1) = exp(-(t1 - t0)) y0: dL/dt1 = -y(t1) = -exp(-1), dL/dt0 = +exp(-1).
    t = torch.tensor([0.0, 1.0], dtype=torch.float64, requires_grad=True)
    y0 = torch.ones(1, dtype=torch.float64)
    sol = solve(
        Decay(), y0, t, integrator=integrator, gradient=gradient, integrator_options=options
    )
    sol.ys[-1].sum().backward()
    assert t.grad is not None
    e = math.exp(-1.0)
    tol = 1e-5 if "heun" in integrator else 1e-7
    torch.testing.assert_close(
        t.grad, torch.tensor([e, -e], dtype=torch.float64), rtol=tol, atol=tol
    )


def _tensor_field(t: Tensor, y: Tensor) -> Tensor:
    """A time-dependent nonlinear field."""
    return torch.sin(3 * t) * y - 0.3 * y**3 + 0.1 * torch.cos(y.flip(-1))


def _tuple_field(t: Tensor, y: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
    """A damped oscillator with a driven second leaf."""
    x, v = y
    return (v, -x - 0.2 * v + torch.sin(t) * x.sum(-1, keepdim=True))


def _loss(ys: Tensor | tuple[Tensor, ...]) -> Tensor:
    leaves = ys if isinstance(ys, tuple) else (ys,)
    total = torch.zeros((), dtype=torch.float64)
    for k, leaf in enumerate(leaves):
        w = torch.linspace(0.5, 1.5, leaf.numel(), dtype=torch.float64).reshape(leaf.shape)
        total = total + ((k + 1) * w * leaf).sum() + (leaf**2).sum()
    return total


def _states(kind: str) -> tuple[Any, Any]:
    if kind == "tensor":
        return _tensor_field, torch.tensor([[0.3, -0.7], [1.1, 0.2]], dtype=torch.float64)
    return _tuple_field, (
        torch.tensor([[0.4, -0.2]], dtype=torch.float64),
        torch.tensor([[0.1, 0.5]], dtype=torch.float64),
    )


def _t_grad(run: Any, span: list[float], y0: Any) -> tuple[Tensor, Any]:
    t = torch.tensor(span, dtype=torch.float64, requires_grad=True)
    ys = run(t, y0)
    _loss(ys).backward()
    assert t.grad is not None
    return t.grad, ys


SPANS = {"forward": [0.0, 0.4, 1.1, 1.5], "reverse": [1.2, 0.7, 0.1, -0.3]}


@pytest.mark.parametrize("kind", ["tensor", "tuple"])
@pytest.mark.parametrize("direction", sorted(SPANS))
@pytest.mark.parametrize(
    ("method", "gradient"),
    [("dopri5", "backprop"), ("dopri5", "adjoint"), ("dopri5", "checkpoint"), ("rk4", "backprop")],
)
def test_time_gradients_match_torchdiffeq(
    kind: str, direction: str, method: str, gradient: str
) -> None:
    func, y0 = _states(kind)
    span = SPANS[direction]
    expected, theirs = _t_grad(lambda t, y: torchdiffeq.odeint(func, y, t, **TIGHT), span, y0)
    options = {"step_size": 1e-3} if method == "rk4" else dict(TIGHT)
    got, ours = _t_grad(
        lambda t, y: (
            flowkit.odeint_solution(
                func, y, t, method=method, gradient=gradient, options=options, adjoint_params=()
            ).ys
        ),
        span,
        y0,
    )
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-8)
    for a, b in zip(
        ours if isinstance(ours, tuple) else (ours,),
        theirs if isinstance(theirs, tuple) else (theirs,),
        strict=True,
    ):
        torch.testing.assert_close(a.detach(), b.detach(), rtol=1e-6, atol=1e-8)


def test_time_gradient_from_odeint_with_backprop_is_not_none() -> None:
    # The probe of the issue: flowkit.odeint, native dopri5, gradient="backprop".
    t = torch.tensor([0.0, 1.0], requires_grad=True)
    y = flowkit.odeint(lambda t, y: -y, torch.tensor([1.0]), t)
    y[-1].sum().backward()
    assert t.grad is not None
    torch.testing.assert_close(t.grad[1], torch.tensor(-math.exp(-1.0)), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("gradient", ["backprop", "adjoint", "checkpoint"])
def test_values_and_other_gradients_do_not_change(gradient: str) -> None:
    span = [0.0, 0.5, 1.0]
    results = []
    for t_requires_grad in (False, True):
        field = Decay()
        y0 = torch.tensor([[1.0, -2.0]], dtype=torch.float64, requires_grad=True)
        t = torch.tensor(span, dtype=torch.float64, requires_grad=t_requires_grad)
        sol = solve(field, y0, t, gradient=gradient, integrator_options=TIGHT)
        _loss(sol.ys).backward()
        results.append((sol.ys.detach(), y0.grad, field.k.grad))
    (ys_a, gy_a, gk_a), (ys_b, gy_b, gk_b) = results
    assert torch.equal(ys_a, ys_b)
    torch.testing.assert_close(gy_a, gy_b, rtol=1e-12, atol=0.0)
    torch.testing.assert_close(gk_a, gk_b, rtol=1e-12, atol=0.0)


def test_no_extra_evaluations_without_time_gradients() -> None:
    t = torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64, requires_grad=True)
    y0 = torch.ones(2, dtype=torch.float64)
    with torch.no_grad():
        sol = solve(Decay(), y0, t)
    assert "time_gradient_nfe" not in sol.stats.extra
    sol = solve(Decay(), y0, t)
    assert sol.stats.extra["time_gradient_nfe"] == 2
