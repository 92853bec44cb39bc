"""What the example re-implementations share: the solver module handle and the result record."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["ExampleRun", "SolverModule", "parameters_of", "seeded", "solver_function"]

SolverModule = ModuleType
"""``torchdiffeq`` or ``flowkit``: has ``odeint``, ``odeint_adjoint`` and ``odeint_event``."""


@dataclass
class ExampleRun:
    """The numbers an example produced: its losses per iteration and its final parameters."""

    losses: list[float] = field(default_factory=list)
    parameters: dict[str, Tensor] = field(default_factory=dict)
    extra: dict[str, Tensor] = field(default_factory=dict)


def solver_function(solvers: SolverModule, adjoint: bool) -> Callable[..., Any]:
    """``solvers.odeint_adjoint`` when ``adjoint``, else ``solvers.odeint`` (as the scripts)."""
    return solvers.odeint_adjoint if adjoint else solvers.odeint


def parameters_of(*modules: nn.Module) -> dict[str, Tensor]:
    """Detached copies of the parameters of ``modules``, keyed ``"<index>.<name>"``."""
    return {
        f"{i}.{name}": p.detach().clone()
        for i, module in enumerate(modules)
        for name, p in module.named_parameters()
    }


def seeded(seed: int) -> torch.Generator:
    """A CPU generator with ``seed`` (data draws that do not touch the global RNG)."""
    return torch.Generator().manual_seed(seed)
