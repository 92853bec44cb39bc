"""torchdiffeq's documented examples give the same numbers with ``flowkit`` as with ``torchdiffeq``.

Each example (tests/examples_torchdiffeq/) takes the module that provides the
solver functions, so the only difference between the two runs is the import a
user changes. Same seeds, same data, a few training iterations: the losses of
every iteration and the final parameters agree to the accuracy the solves
themselves have (flowkit's dopri5 shares torchdiffeq's tableau, but not its
every step-size decision, so the numbers agree to the solver tolerance and
float32 round-off, not bit for bit).
"""

from __future__ import annotations

from collections.abc import Iterator
from types import ModuleType

import pytest
import torch
import torchdiffeq
from examples_torchdiffeq import cnf, latent_ode, ode_demo
from examples_torchdiffeq.bouncing_ball import BouncingBall, closed_form_collision_times
from examples_torchdiffeq.common import ExampleRun

import flowkit

# Loss tolerance per example: relative, at the accuracy of its solves (cnf.py
# solves at rtol = atol = 1e-5; the others at the default 1e-7/1e-9 in float32).
EXAMPLES = {
    "ode_demo": (ode_demo, 1e-5),
    "latent_ode": (latent_ode, 1e-5),
    "cnf": (cnf, 1e-4),
}


@pytest.fixture
def script_dtype() -> Iterator[None]:
    """float32 by default, as the scripts run (the suite's default is float64)."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float32)
    yield
    torch.set_default_dtype(previous)


def _assert_same_run(flowkit_run: ExampleRun, reference: ExampleRun, rtol: float) -> None:
    torch.testing.assert_close(
        torch.tensor(flowkit_run.losses), torch.tensor(reference.losses), rtol=rtol, atol=0.0
    )
    assert flowkit_run.parameters.keys() == reference.parameters.keys()
    for name, value in reference.parameters.items():
        # Adam and RMSprop steps are O(lr); a solve difference at the tolerance
        # moves them by far less than 1e-4.
        torch.testing.assert_close(flowkit_run.parameters[name], value, rtol=0.0, atol=1e-4)


@pytest.mark.usefixtures("script_dtype")
@pytest.mark.parametrize("name", EXAMPLES)
def test_example_trains_as_with_torchdiffeq(name: str) -> None:
    example, rtol = EXAMPLES[name]
    reference = example.run(torchdiffeq)
    result = example.run(flowkit)
    _assert_same_run(result, reference, rtol)
    assert result.losses[0] != result.losses[-1]  # the optimiser really moved the model


@pytest.mark.usefixtures("script_dtype")
@pytest.mark.parametrize("name", EXAMPLES)
def test_example_adjoint_trains_as_with_torchdiffeq(name: str) -> None:
    example, rtol = EXAMPLES[name]
    reference = example.run(torchdiffeq, adjoint=True)
    _assert_same_run(example.run(flowkit, adjoint=True), reference, rtol)


@pytest.mark.usefixtures("script_dtype")
def test_ode_demo_data_are_the_same_spiral() -> None:
    reference = ode_demo.run(torchdiffeq, iterations=1)
    result = ode_demo.run(flowkit, iterations=1)
    # dopri5 at rtol 1e-7, atol 1e-9 in float32: agreement to a few float32 ulps of |y| <= 2.
    torch.testing.assert_close(result.extra["true_y"], reference.extra["true_y"], rtol=0, atol=3e-5)
    torch.testing.assert_close(
        result.extra["test_loss"], reference.extra["test_loss"], rtol=1e-5, atol=0
    )


BOUNCES = 3
BALL_PARAMETERS = ("gravity", "log_radius", "t0", "init_pos", "init_vel", "absorption")


def _collisions(solvers: ModuleType, adjoint: bool = False) -> tuple[list[float], dict[str, float]]:
    ball = BouncingBall(solvers, adjoint=adjoint)
    times = ball.collision_times(BOUNCES)
    times[-1].backward()
    grads = {name: float(p.grad) for name, p in ball.named_parameters()}
    return [float(t.detach()) for t in times], grads


def _closed_form_gradients() -> dict[str, float]:
    values = {
        "gravity": 9.8,
        "log_radius": float(torch.log(torch.tensor(0.2, dtype=torch.float64))),
        "t0": 0.0,
        "init_pos": 10.0,
        "init_vel": 0.0,
        "absorption": 0.2,
    }
    leaves = {
        k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in values.items()
    }
    last = closed_form_collision_times(
        BOUNCES,
        t0=leaves["t0"],
        pos=leaves["init_pos"],
        vel=leaves["init_vel"],
        gravity=leaves["gravity"],
        radius=torch.exp(leaves["log_radius"]),
        absorption=leaves["absorption"],
    )[-1]
    last.backward()
    return {k: float(v.grad) for k, v in leaves.items()}


def test_bouncing_ball_collision_times_match_closed_form_and_torchdiffeq() -> None:
    times, _ = _collisions(flowkit)
    reference, _ = _collisions(torchdiffeq)
    exact = closed_form_collision_times(BOUNCES)
    # Free fall is a quadratic: dopri5 is exact up to round-off, so the event
    # times are as accurate as the search's bracket (atol = 1e-8).
    assert times == pytest.approx(exact, abs=1e-8)
    assert times == pytest.approx(reference, abs=1e-8)


def test_bouncing_ball_gradients_through_event_times() -> None:
    _, grads = _collisions(flowkit)
    _, reference = _collisions(torchdiffeq)
    exact = _closed_form_gradients()
    assert set(grads) == set(BALL_PARAMETERS)
    for name in BALL_PARAMETERS:
        assert grads[name] == pytest.approx(exact[name], rel=1e-6, abs=1e-9), name
        assert grads[name] == pytest.approx(reference[name], rel=1e-6, abs=1e-9), name


def test_bouncing_ball_adjoint_gradients() -> None:
    _, grads = _collisions(flowkit, adjoint=True)
    _, reference = _collisions(torchdiffeq, adjoint=True)
    for name in BALL_PARAMETERS:
        assert grads[name] == pytest.approx(reference[name], rel=1e-6, abs=1e-9), name


def test_bouncing_ball_dense_path_matches_torchdiffeq() -> None:
    with torch.no_grad():
        times, positions, velocities = BouncingBall(flowkit).simulate(BOUNCES)
        ref_times, ref_positions, ref_velocities = BouncingBall(torchdiffeq).simulate(BOUNCES)
    assert times.shape == ref_times.shape
    torch.testing.assert_close(times, ref_times, rtol=0, atol=1e-8)
    # Near a bounce a time difference of 1e-8 moves the state by |v| * 1e-8 < 2e-7.
    torch.testing.assert_close(positions, ref_positions, rtol=0, atol=1e-6)
    torch.testing.assert_close(velocities, ref_velocities, rtol=0, atol=1e-6)
    assert float(positions.min()) >= 0.2 - 1e-6  # the ball never sinks below its radius
