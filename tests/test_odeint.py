"""``flowkit.odeint``: torchdiffeq's call and result shapes, any registered method by name."""

from __future__ import annotations

import math

import pytest
import torch
import torchdiffeq

import flowkit
from flowkit.errors import UnknownComponentError
from flowkit.testing.problems import exponential_decay, tuple_rotation


def test_same_shapes_and_values_as_torchdiffeq_for_a_tensor() -> None:
    p = exponential_decay()
    y0 = p.y0.detach()
    t = torch.linspace(0.0, 2.0, 5)
    ours = flowkit.odeint(p.func, y0, t, rtol=1e-8, atol=1e-10)
    theirs = torchdiffeq.odeint(p.func, y0, t, rtol=1e-8, atol=1e-10)
    assert ours.shape == theirs.shape == (5, 3)
    torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=1e-8)


def test_tuple_state_matches_torchdiffeq_layout() -> None:
    p = tuple_rotation()
    t = p.times(5)  # on the step grid, where torchdiffeq does not interpolate
    # torchdiffeq's "rk4" is the 3/8 rule.
    ours = flowkit.odeint(p.func, p.y0, t, method="rk4_38", options={"step_size": 0.01})
    theirs = torchdiffeq.odeint(p.func, p.y0, t, method="rk4", options={"step_size": 0.01})
    assert isinstance(ours, tuple) and len(ours) == 2
    for a, b in zip(ours, theirs, strict=True):
        assert a.shape == b.shape
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_backward_in_time_and_gradients() -> None:
    p = exponential_decay()
    y1 = p.exact(p.t1).detach().requires_grad_(True)
    ys = flowkit.odeint(p.func, y1, p.times(2, backward=True), method="tsit5", rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(ys[-1], p.y0, rtol=1e-6, atol=1e-8)
    ys[-1].sum().backward()
    torch.testing.assert_close(y1.grad, p.grad_y0(p.t1, p.t0), rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("method", ["dopri5", "torchdiffeq.dopri5", "torchsde.heun"])
def test_any_registered_method_and_solution_stats(method: str) -> None:
    p = exponential_decay()
    options = {"n_steps": 200} if method.startswith("torchsde") else None
    rtol = None if options else 1e-7
    sol = flowkit.odeint_solution(
        p.func, p.y0, p.times(3), method=method, rtol=rtol, options=options
    )
    assert sol.stats.nfe > 0 and sol.stats.n_accepted > 0
    torch.testing.assert_close(sol.ys[-1], p.exact(p.t1), rtol=1e-4, atol=1e-6)


def test_errors() -> None:
    p = exponential_decay()
    with pytest.raises(TypeError, match="takes no rtol"):
        flowkit.odeint(p.func, p.y0, p.times(2), method="rk4", rtol=1e-3)
    with pytest.raises(UnknownComponentError, match="dopri5"):
        flowkit.odeint(p.func, p.y0, p.times(2), method="dopri_5")
    with pytest.raises(TypeError, match="given twice"):
        flowkit.odeint(p.func, p.y0, p.times(2), rtol=1e-3, options={"rtol": 1e-4})
    with pytest.raises(TypeError, match="Unknown option"):
        flowkit.odeint(p.func, p.y0, p.times(2), options={"bogus": 1})


def test_zero_rtol_and_atol_are_refused_before_solving() -> None:
    p = exponential_decay()
    for method in ("dopri5", "torchdiffeq.dopri5"):
        with pytest.raises(ValueError, match="rtol and atol are both 0") as info:
            flowkit.odeint(p.func, p.y0, p.times(2), method=method, rtol=0.0, atol=0.0)
        assert "NaN" not in str(info.value)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_times_are_refused(dtype: torch.dtype) -> None:
    t = torch.tensor([0.0, 0.1], dtype=dtype)
    with pytest.raises(TypeError, match=rf"t has dtype {dtype}.*float32 or float64"):
        flowkit.odeint(lambda t, y: -y, torch.ones(2), t, method="rk4")


def test_times_for_a_half_precision_state_are_at_least_float32() -> None:
    seen: list[torch.Tensor] = []

    def decay(t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        seen.append(t)
        return -y

    y0 = torch.ones(2, dtype=torch.float16)
    sol = flowkit.odeint_solution(decay, y0, [0.0, 0.1], method="rk4", options={"n_steps": 4})
    assert sol.ys.dtype == torch.float16
    assert sol.ts.dtype == torch.float32
    assert float(sol.ts[-1]) == float(torch.tensor(0.1, dtype=torch.float32))  # not 0.09998
    assert {t.dtype for t in seen} == {torch.float32}
    assert max(float(t) for t in seen) == float(torch.tensor(0.1, dtype=torch.float32))
    torch.testing.assert_close(
        sol.ys[-1].float(), torch.full((2,), math.exp(-0.1), dtype=torch.float32), rtol=2e-3, atol=0
    )
