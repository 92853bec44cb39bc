"""The problem ``benchmarks/gradients.py`` measures: a CNF-sized field and one training step.

An MLP field ``[x, t] -> 64 -> 64 -> 64 -> 2`` (tanh, weights with a gain of 2,
so that it is not nearly flat), its augmented CNF dynamics with the exact
trace, a fixed batch on a ring, and :func:`training_step`: one forward and
backward pass of the negative log-likelihood under a standard normal base.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import torch
from torch import Tensor, nn

from flowkit.distributions import standard_normal_log_prob
from flowkit.solve import solve

__all__ = [
    "DIM",
    "HIDDEN",
    "CNFDynamics",
    "Field",
    "flat_grad",
    "problem_data",
    "training_step",
]

DIM = 2
HIDDEN = 64


class Field(nn.Module):
    """MLP ``[x, t] -> 64 -> 64 -> 64 -> 2`` with tanh, weights with a gain of 2."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        sizes = [DIM + 1, HIDDEN, HIDDEN, HIDDEN, DIM]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(sizes))
        with torch.no_grad():
            for layer in self.layers:
                layer.weight.normal_(0.0, 2.0 / math.sqrt(layer.in_features), generator=gen)
                layer.bias.normal_(0.0, 0.5, generator=gen)

    def forward(self, t: Tensor, x: Tensor) -> Tensor:
        h = torch.cat([x, t.expand(x.shape[0], 1)], dim=1)
        for layer in self.layers[:-1]:
            h = torch.tanh(layer(h))
        return self.layers[-1](h)


class CNFDynamics(nn.Module):
    """``(x, delta_logp)' = (f, -tr(df/dx))`` with the exact trace."""

    def __init__(self, field: Field) -> None:
        super().__init__()
        self.field = field

    def forward(self, t: Tensor, state: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        x = state[0]
        keep = torch.is_grad_enabled()
        with torch.enable_grad():
            x_ = x if x.requires_grad else x.detach().requires_grad_(True)
            f = self.field(t, x_)
            div = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
            for i in range(DIM):
                (row,) = torch.autograd.grad(
                    f[:, i].sum(), x_, create_graph=keep, retain_graph=True
                )
                div = div + row[:, i]
        if not keep:
            return f.detach(), -div.detach()
        return f, -div


def problem_data(batch: int, dtype: torch.dtype) -> Tensor:
    """The batch: points on a noisy ring of radius 1.5 (seed 1)."""
    gen = torch.Generator().manual_seed(1)
    angle = torch.rand(batch, generator=gen, dtype=torch.float64) * 2 * math.pi
    radius = 1.5 + 0.2 * torch.randn(batch, generator=gen, dtype=torch.float64)
    x = torch.stack([radius * angle.cos(), radius * angle.sin()], dim=1)
    return x.to(dtype)


def training_step(
    dynamics: nn.Module,
    x: Tensor,
    integrator: str,
    options: dict[str, Any],
    gradient: str,
    gradient_options: dict[str, Any] | None = None,
) -> tuple[float, dict[str, Any]]:
    """One forward and backward pass; returns the loss and the solve's statistics.

    With :class:`CNFDynamics` the loss is the negative log-likelihood; with a
    plain :class:`Field` it is the same base term without the trace.
    """
    dynamics.zero_grad(set_to_none=True)
    cnf = isinstance(dynamics, CNFDynamics)
    t = torch.tensor([0.0, 1.0], dtype=x.dtype)
    y0 = (x, torch.zeros(x.shape[0], dtype=x.dtype)) if cnf else x
    sol = solve(
        dynamics,
        y0,
        t,
        integrator=integrator,
        gradient=gradient,
        integrator_options=options,
        gradient_options=gradient_options,
    )
    x1, dlogp = sol.final if cnf else (sol.final, 0.0)  # type: ignore[misc]
    base = standard_normal_log_prob(x1)
    loss = -(base - dlogp).mean()
    loss.backward()
    return float(loss.detach()), sol.stats.as_dict()


def flat_grad(module: nn.Module) -> Tensor:
    """All parameter gradients of ``module`` as one float64 vector."""
    return torch.cat([p.grad.reshape(-1).double() for p in module.parameters()])
