"""The suite contract: plan tasks from a selection, run one repetition, derive ratios."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

from flowkit.bench.selection import Selection
from flowkit.bench.tasks import Metric, Task
from flowkit.registry import Registry

__all__ = ["Plan", "PlanContext", "Suite"]


@dataclass
class PlanContext:
    """What a suite needs to plan its tasks.

    Attributes:
        registry: where component names are resolved.
        selection: the user's patterns per kind.
        quick: plan a smaller problem (tests, smoke runs).
        peers: peer names to include (``None``: every peer the suite knows).
        dtype: ``"float32"`` or ``"float64"``.
        device: the torch device string, e.g. ``"cpu"`` or ``"cuda"``.
    """

    registry: Registry
    selection: Selection
    quick: bool = False
    peers: tuple[str, ...] | None = None
    dtype: str = "float32"
    device: str = "cpu"


@dataclass
class Plan:
    """The tasks of a suite, plus what it left out and why."""

    tasks: list[Task] = field(default_factory=list)
    excluded: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


class Suite(ABC):
    """A benchmark suite: one question, answered by measuring tasks.

    Contract:
        * :meth:`plan` turns the selection into tasks (plain data), raising
          :class:`~flowkit.bench.selection.BenchSelectionError` for a selection
          it cannot run; deterministic, so every ``torchrun`` rank plans alike.
        * :meth:`run` performs one repetition of a task with the given seed and
          returns the values of :attr:`metrics` (a subset when some do not
          apply), and curves as lists of ``[x, y]`` pairs. It may run in
          another process; it must seed everything it draws from ``seed``.
        * :meth:`derive` turns aggregated results into ratios and goals.

    Class attributes:
        name: the suite's name on the command line.
        question: the question it answers, shown in the report.
        metrics: the measured quantities.
    """

    name: ClassVar[str]
    question: ClassVar[str]
    metrics: ClassVar[tuple[Metric, ...]]

    @abstractmethod
    def plan(self, ctx: PlanContext) -> Plan:
        """The tasks to run for this selection."""

    @abstractmethod
    def run(self, task: Task, seed: int) -> dict[str, float | list[list[float]]]:
        """One measured repetition of ``task``."""

    def derive(
        self, results: list[dict[str, Any]]
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Ratios and goals from this suite's aggregated results (default: none)."""
        return [], []
