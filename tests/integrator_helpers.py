"""Helpers shared by the integrator tests: options derived from declared capabilities."""

from __future__ import annotations

import math
from typing import Any

import torch
from registry_helpers import suite_registry

from flowkit.registry import ComponentSpec
from flowkit.state import State, as_tuple
from flowkit.testing.order import pinned_step_options

__all__ = [
    "INTEGRATORS",
    "accepted_options",
    "accuracy_tolerance",
    "fixed_step_options",
    "max_error",
    "run",
    "spec",
    "tolerance_options",
]

INTEGRATORS = suite_registry().names("integrator")


def spec(name: str) -> ComponentSpec:
    """The registry spec of an integrator."""
    return suite_registry().get("integrator", name)


def accepted_options(name: str) -> set[str] | None:
    """The option names ``name`` accepts (None: any)."""
    options = spec(name).options()
    return None if options is None else set(options)


def fixed_step_options(name: str, h: float) -> dict[str, Any] | None:
    """Options making ``name`` take steps of exactly ``h`` (None if it cannot): the kit's."""
    return pinned_step_options(spec(name).capabilities, accepted_options(name), h)


def tolerance_options(name: str, tol: float) -> dict[str, Any]:
    """``rtol = atol = tol`` for an adaptive integrator."""
    return {"rtol": tol, "atol": tol}


def accuracy_tolerance(name: str) -> float:
    """A tolerance that keeps the solve cheap for the method's order."""
    order = spec(name).capabilities["order"]
    return 1e-4 if order <= 2 else (1e-5 if order == 3 else 1e-7)


def run(name: str, func: Any, y0: State, t: torch.Tensor, **options: Any):
    """Create the integrator with ``options`` and integrate."""
    return suite_registry().create("integrator", name, **options).integrate(func, y0, t)


def max_error(ys: State, exact: State, *, relative: bool = True) -> float:
    """Largest (relative to max(1, |exact|)) error over every leaf."""
    worst = 0.0
    for a, b in zip(as_tuple(ys), as_tuple(exact), strict=True):
        err = float((a - b).detach().abs().max())
        scale = max(1.0, float(b.detach().abs().max())) if relative else 1.0
        worst = max(worst, err / scale)
    return worst if math.isfinite(worst) else math.inf
