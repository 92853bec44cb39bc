"""torchdiffeq's ``bouncing_ball.py``: a ball falling under gravity, bouncing off the ground.

The state is ``(position, velocity, log_radius)``; the event is the ball
touching the ground (``position - radius`` reaching zero), found by
``odeint_event``; at each bounce the velocity is reversed and damped by the
absorption. Every physical quantity (gravity, radius, start time, initial
position and velocity, absorption) is a parameter, so the collision times are
differentiable through the event times. All in float64, as the script runs.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from examples_torchdiffeq.common import SolverModule, solver_function

__all__ = ["BouncingBall", "closed_form_collision_times"]

State = tuple[Tensor, Tensor, Tensor]
Number = Any
TOL = 1e-8


def _parameter(value: float) -> nn.Parameter:
    return nn.Parameter(torch.tensor([value], dtype=torch.float64))


class BouncingBall(nn.Module):
    """The ball, simulated with the solver functions of ``solvers``."""

    def __init__(
        self,
        solvers: SolverModule,
        *,
        radius: float = 0.2,
        gravity: float = 9.8,
        adjoint: bool = False,
    ) -> None:
        super().__init__()
        self.gravity = _parameter(gravity)
        self.log_radius = nn.Parameter(torch.log(torch.tensor([radius], dtype=torch.float64)))
        self.t0 = _parameter(0.0)
        self.init_pos = _parameter(10.0)
        self.init_vel = _parameter(0.0)
        self.absorption = _parameter(0.2)
        self.solvers = solvers
        self.odeint = solver_function(solvers, adjoint)

    def forward(self, t: Tensor, state: State) -> State:
        _, vel, log_radius = state
        return vel, -self.gravity, torch.zeros_like(log_radius)

    def event_fn(self, t: Tensor, state: State) -> Tensor:
        """Positive while the ball is in the air, negative inside the ground."""
        pos, _, log_radius = state
        return pos - torch.exp(log_radius)

    def initial_state(self) -> tuple[Tensor, State]:
        return self.t0, (self.init_pos, self.init_vel, self.log_radius)

    def bounce(self, state: State) -> State:
        """The state just after a collision (lifted by 1e-7 so the event does not fire again)."""
        pos, vel, log_radius = state
        return pos + 1e-7, -vel * (1 - self.absorption), log_radius

    def collision_times(self, nbounces: int) -> list[Tensor]:
        """The first ``nbounces`` collision times, each differentiable in every parameter."""
        times = []
        t0, state = self.initial_state()
        for _ in range(nbounces):
            event_t, solution = self.solvers.odeint_event(
                self,
                state,
                t0,
                event_fn=self.event_fn,
                reverse_time=False,
                atol=TOL,
                rtol=TOL,
                odeint_interface=self.odeint,
            )
            times.append(event_t)
            state = self.bounce(tuple(s[-1] for s in solution))  # type: ignore[arg-type]
            t0 = event_t
        return times

    def simulate(self, nbounces: int, points_per_unit: int = 50) -> tuple[Tensor, Tensor, Tensor]:
        """The dense path ``(times, positions, velocities)`` through ``nbounces`` bounces."""
        event_times = self.collision_times(nbounces)
        t0, state = self.initial_state()
        times, positions, velocities = [t0.reshape(-1)], [state[0]], [state[1]]
        for event_t in event_times:
            inner = torch.linspace(
                float(t0), float(event_t), int((float(event_t) - float(t0)) * points_per_unit)
            )[1:-1].to(torch.float64)
            tt = torch.cat([t0.reshape(-1), inner, event_t.reshape(-1)])
            solution = self.solvers.odeint(self, state, tt, atol=TOL, rtol=TOL)
            positions.append(solution[0][1:].reshape(-1))
            velocities.append(solution[1][1:].reshape(-1))
            times.append(tt[1:])
            state = self.bounce(tuple(s[-1] for s in solution))  # type: ignore[arg-type]
            t0 = event_t
        return torch.cat(times), torch.cat(positions), torch.cat(velocities)


def closed_form_collision_times(
    nbounces: int,
    *,
    t0: Number = 0.0,
    pos: Number = 10.0,
    vel: Number = 0.0,
    gravity: Number = 9.8,
    radius: Number = 0.2,
    absorption: Number = 0.2,
    lift: float = 1e-7,
) -> list[Number]:
    """The collision times of the same ball in closed form (free fall between bounces).

    Floats or 0-dimensional tensors (then the times are differentiable in them).
    """
    times = []
    for _ in range(nbounces):
        # pos + vel s - g s^2 / 2 = radius: the positive root s.
        s = (vel + (vel**2 + 2 * gravity * (pos - radius)) ** 0.5) / gravity
        t0 = t0 + s
        times.append(t0)
        vel = -(vel - gravity * s) * (1 - absorption)
        pos = radius + lift
    return times
