"""torchdiffeq's ``cnf.py``: a continuous normalizing flow on two circles.

A hypernetwork maps ``t`` to the weights of a width-``width`` field
``dz/dt = mean_k U_k tanh(W_k z + B_k)`` (gated ``U``); the log-density change
is ``-tr(df/dz)``, computed exactly by autograd, one input dimension at a
time. Data at ``t1 = 10`` are solved back to ``t0 = 0`` with dopri5
(tolerances 1e-5) as the tuple state ``(z, logp_diff)``, and the negative
log-likelihood under ``N(0, 0.1 I)`` is minimised with Adam. The two circles
(radius 1 and 0.5, noise 0.06) are drawn from a seeded generator instead of
scikit-learn's ``make_circles``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from examples_torchdiffeq.common import (
    ExampleRun,
    SolverModule,
    parameters_of,
    seeded,
    solver_function,
)

__all__ = ["HyperCNF", "HyperNetwork", "run", "trace_df_dz", "two_circles"]


def two_circles(
    generator: torch.Generator, n: int, *, noise: float = 0.06, factor: float = 0.5
) -> Tensor:
    """``n`` points on two concentric circles (radii 1 and ``factor``), with Gaussian noise."""
    n_out = n // 2
    outer = torch.linspace(0.0, 2 * math.pi, n_out + 1, dtype=torch.float64)[:-1]
    inner = torch.linspace(0.0, 2 * math.pi, n - n_out + 1, dtype=torch.float64)[:-1]
    points = torch.cat(
        [
            torch.stack([torch.cos(outer), torch.sin(outer)], dim=1),
            factor * torch.stack([torch.cos(inner), torch.sin(inner)], dim=1),
        ]
    )
    points = points + noise * torch.randn(points.shape, generator=generator, dtype=points.dtype)
    return points[torch.randperm(n, generator=generator)].float()


def trace_df_dz(f: Tensor, z: Tensor) -> Tensor:
    """``tr(df/dz)`` per row, by one vector-Jacobian product per input dimension."""
    total = torch.zeros(z.shape[0], dtype=z.dtype)
    for i in range(z.shape[1]):
        total = total + torch.autograd.grad(f[:, i].sum(), z, create_graph=True)[0][:, i]
    return total


class HyperNetwork(nn.Module):
    """``t`` -> the field's weights ``W``, ``B`` and gated ``U``."""

    def __init__(self, in_out_dim: int, hidden_dim: int, width: int) -> None:
        super().__init__()
        self.blocksize = width * in_out_dim
        self.width, self.in_out_dim = width, in_out_dim
        self.fc1 = nn.Linear(1, hidden_dim)
        self.fc2 = nn.Linear(hidden_dim, hidden_dim)
        self.fc3 = nn.Linear(hidden_dim, 3 * self.blocksize + width)

    def forward(self, t: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        params = self.fc3(torch.tanh(self.fc2(torch.tanh(self.fc1(t.reshape(1, 1)))))).reshape(-1)
        size, width, dim = self.blocksize, self.width, self.in_out_dim
        w = params[:size].reshape(width, dim, 1)
        u = params[size : 2 * size].reshape(width, 1, dim)
        g = params[2 * size : 3 * size].reshape(width, 1, dim)
        b = params[3 * size :].reshape(width, 1, 1)
        return w, b, u * torch.sigmoid(g)


class HyperCNF(nn.Module):
    """The augmented field ``(z, logp) -> (f(t, z), -tr(df/dz))``."""

    def __init__(self, in_out_dim: int, hidden_dim: int, width: int) -> None:
        super().__init__()
        self.width = width
        self.hyper_net = HyperNetwork(in_out_dim, hidden_dim, width)

    def forward(self, t: Tensor, states: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        z = states[0]
        with torch.set_grad_enabled(True):
            z.requires_grad_(True)
            w, b, u = self.hyper_net(t)
            zz = torch.unsqueeze(z, 0).repeat(self.width, 1, 1)
            dz_dt = torch.matmul(torch.tanh(torch.matmul(zz, w) + b), u).mean(0)
            dlogp_dt = -trace_df_dz(dz_dt, z).view(-1, 1)
        return dz_dt, dlogp_dt


def run(
    solvers: SolverModule,
    *,
    iterations: int = 2,
    num_samples: int = 64,
    width: int = 16,
    hidden_dim: int = 16,
    adjoint: bool = False,
    seed: int = 0,
) -> ExampleRun:
    """Train for ``iterations`` steps; the negative log-likelihoods and the weights."""
    odeint = solver_function(solvers, adjoint)
    torch.manual_seed(seed)
    func = HyperCNF(2, hidden_dim, width)
    optimizer = torch.optim.Adam(func.parameters(), lr=1e-3)
    base = torch.distributions.MultivariateNormal(torch.zeros(2), 0.1 * torch.eye(2))
    draws = seeded(seed)
    result = ExampleRun()
    for _ in range(iterations):
        optimizer.zero_grad()
        x = two_circles(draws, num_samples)
        logp_diff_t1 = torch.zeros(num_samples, 1)
        z_t, logp_diff_t = odeint(
            func,
            (x, logp_diff_t1),
            torch.tensor([10.0, 0.0]),
            atol=1e-5,
            rtol=1e-5,
            method="dopri5",
        )
        logp_x = base.log_prob(z_t[-1]) - logp_diff_t[-1].view(-1)
        loss = -logp_x.mean(0)
        loss.backward()
        optimizer.step()
        result.losses.append(loss.item())
    result.parameters = parameters_of(func)
    return result
