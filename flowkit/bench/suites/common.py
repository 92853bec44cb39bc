"""Helpers shared by the suites: dtypes, seeding, timing."""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch

__all__ = ["DTYPES", "median_time", "seed_everything", "sync"]

DTYPES = {"float32": torch.float32, "float64": torch.float64}


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def sync(device: str) -> None:
    """Wait for queued device work, so timings cover it (no-op on CPU)."""
    if device.startswith("cuda"):
        torch.cuda.synchronize(torch.device(device))


def median_time(fn: Callable[[], object], *, device: str, repeats: int = 30) -> float:
    """Median wall time of ``fn()`` over ``repeats`` calls (after one warm-up)."""
    fn()
    times = []
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)
