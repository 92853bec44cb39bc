"""The benchmark suites, by name, imported on first use.

``accuracy``, ``speed`` and ``memory`` always exist; ``training`` exists when
:mod:`flowkit.train` (the training loop) is installed.
"""

from __future__ import annotations

import importlib
from functools import cache

from flowkit.bench.selection import BenchSelectionError
from flowkit.bench.suites.base import Plan, PlanContext, Suite

__all__ = ["SUITES", "Plan", "PlanContext", "Suite", "available_suites", "get_suite"]

SUITES: dict[str, str] = {
    "accuracy": "flowkit.bench.suites.accuracy:AccuracySuite",
    "speed": "flowkit.bench.suites.speed:SpeedSuite",
    "memory": "flowkit.bench.suites.memory:MemorySuite",
    "training": "flowkit.bench.suites.training:TrainingSuite",
}
"""Suite name -> ``module:class``, in report order."""


def _training_available() -> bool:
    try:
        importlib.import_module("flowkit.bench.suites.training")
    except ImportError:  # flowkit.train (or the part the suite uses) is absent
        return False
    return True


def available_suites() -> list[str]:
    """The suites this installation can run (``training`` needs :mod:`flowkit.train`)."""
    return [n for n in SUITES if n != "training" or _training_available()]


@cache
def get_suite(name: str) -> Suite:
    """The suite called ``name``.

    Raises:
        BenchSelectionError: for an unknown or unavailable suite, listing the
            available ones.
    """
    if name not in SUITES:
        raise BenchSelectionError(
            f"Unknown suite {name!r}. Available suites: {', '.join(available_suites())}."
        )
    if name not in available_suites():
        raise BenchSelectionError(
            f"The {name!r} suite needs flowkit.train, which is not installed in this version. "
            f"Available suites: {', '.join(available_suites())}."
        )
    module_name, cls_name = SUITES[name].split(":")
    cls = getattr(importlib.import_module(module_name), cls_name)
    return cls()  # type: ignore[no-any-return]
