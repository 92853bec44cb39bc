"""torchdiffeq's ``ode_demo.py``: fit an MLP field to the cubic spiral ``y' = y**3 A``.

The true trajectory is solved once with dopri5; each iteration draws a batch
of short trajectory pieces, solves the learned field ``net(y**3)`` from their
first points and minimises the mean absolute error with RMSprop, as the
script does (smaller ``data_size`` and a handful of iterations here).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from examples_torchdiffeq.common import (
    ExampleRun,
    SolverModule,
    parameters_of,
    seeded,
    solver_function,
)

__all__ = ["SpiralField", "TrueSpiral", "run"]

TRUE_A = ((-0.1, 2.0), (-2.0, -0.1))


class TrueSpiral(nn.Module):
    """The data's field ``y**3 @ A``."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("a", torch.tensor(TRUE_A))

    def forward(self, t: Tensor, y: Tensor) -> Tensor:
        return torch.mm(y**3, self.a)


class SpiralField(nn.Module):
    """The learned field ``net(y**3)``: 2 -> 50 (tanh) -> 2, weights N(0, 0.1), zero biases."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2, 50), nn.Tanh(), nn.Linear(50, 2))
        for m in self.net.modules():
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, mean=0.0, std=0.1)
                nn.init.constant_(m.bias, 0.0)

    def forward(self, t: Tensor, y: Tensor) -> Tensor:
        return self.net(y**3)


def run(
    solvers: SolverModule,
    *,
    iterations: int = 3,
    data_size: int = 200,
    batch_time: int = 10,
    batch_size: int = 20,
    adjoint: bool = False,
    seed: int = 0,
) -> ExampleRun:
    """Train for ``iterations`` steps; the losses, the test loss (``extra``) and the weights."""
    odeint = solver_function(solvers, adjoint)
    torch.manual_seed(seed)
    true_y0 = torch.tensor([[2.0, 0.0]])
    t = torch.linspace(0.0, 25.0, data_size)
    with torch.no_grad():
        true_y = odeint(TrueSpiral(), true_y0, t, method="dopri5")
    func = SpiralField()
    optimizer = torch.optim.RMSprop(func.parameters(), lr=1e-3)
    draws = seeded(seed)
    result = ExampleRun()
    for _ in range(iterations):
        optimizer.zero_grad()
        starts = torch.randperm(data_size - batch_time, generator=draws)[:batch_size]
        batch_y0, batch_t = true_y[starts], t[:batch_time]
        batch_y = torch.stack([true_y[starts + i] for i in range(batch_time)], dim=0)
        pred_y = odeint(func, batch_y0, batch_t)
        loss = torch.mean(torch.abs(pred_y - batch_y))
        loss.backward()
        optimizer.step()
        result.losses.append(loss.item())
    with torch.no_grad():
        result.extra["test_loss"] = torch.mean(torch.abs(odeint(func, true_y0, t) - true_y))
    result.extra["true_y"] = true_y
    result.parameters = parameters_of(func)
    return result
