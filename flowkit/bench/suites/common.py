"""Helpers shared by the suites: dtypes, seeding, a combination's task parameters.

Timing is :mod:`flowkit.bench.timing`.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch

from flowkit.registry import Combination

__all__ = ["DTYPES", "combination_params", "seed_everything"]

DTYPES = {"float32": torch.float32, "float64": torch.float64}


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def combination_params(combo: Combination) -> dict[str, Any]:
    """A task's component names: ``field``, ``integrator``, ``trace`` and ``gradient``."""
    return {
        "field": combo.field.name,
        "integrator": combo.integrator.name,
        "trace": combo.trace.name,
        "gradient": combo.gradient.name,
    }
