"""The benchmark suites, by name, imported on first use.

Every suite ships with flowkit (``training`` drives :mod:`flowkit.train`, which
is part of flowkit), so all of them are always available; a suite that fails
to import is a broken installation and raises, rather than silently vanishing
from the report.
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


def available_suites() -> list[str]:
    """The suites, in report order."""
    return list(SUITES)


@cache
def get_suite(name: str) -> Suite:
    """The suite called ``name``.

    Raises:
        BenchSelectionError: for an unknown suite, listing the available ones.
    """
    if name not in SUITES:
        raise BenchSelectionError(
            f"Unknown suite {name!r}. Available suites: {', '.join(available_suites())}."
        )
    module_name, cls_name = SUITES[name].split(":")
    cls = getattr(importlib.import_module(module_name), cls_name)
    return cls()  # type: ignore[no-any-return]
