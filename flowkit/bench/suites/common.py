"""Helpers shared by the suites: dtypes and seeding (timing is :mod:`flowkit.bench.timing`)."""

from __future__ import annotations

import random

import numpy as np
import torch

__all__ = ["DTYPES", "seed_everything"]

DTYPES = {"float32": torch.float32, "float64": torch.float64}


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
