"""Units of benchmark work: tasks, the records of running them, and their seeds.

A :class:`Task` is one configuration of one suite (a combination, a batch
size, a peer...). It is plain data so that it can travel to a worker process,
a subprocess or another ``torchrun`` rank. Running one repetition of a task
gives one :class:`Record`.
"""

from __future__ import annotations

import zlib
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["Metric", "Record", "Task", "unit_seed"]


@dataclass(frozen=True)
class Metric:
    """A quantity a suite measures.

    Attributes:
        name: the key in each record's ``metrics``.
        unit: the unit shown in tables (``"s"``, ``"MiB"``, ``""``...).
        better: ``"lower"`` or ``"higher"`` when one direction is better (the
            table marks the best value), ``None`` for plain counts.
        label: the column title.
    """

    name: str
    unit: str
    better: str | None
    label: str


@dataclass(frozen=True)
class Task:
    """One configuration to measure.

    Attributes:
        suite: the name of the suite that plans and runs it.
        key: a unique, readable id within the run, e.g.
            ``"speed/flowkit/mlp-dopri5-exact-adjoint/b512"``.
        subject: who does the work: ``"flowkit"`` or a peer's name.
        params: JSON-serialisable parameters the suite reads.
        group: tasks with equal ``group`` do the same work (for ratios).
        isolate: run every repetition in a fresh subprocess (memory peaks).
        warmup: unmeasured repetitions before the first measured one.
        max_repeats: at most this many measured repetitions (``None``: the
            run's ``repeats``), for costly and stable measurements.
    """

    suite: str
    key: str
    subject: str
    params: dict[str, Any]
    group: str = ""
    isolate: bool = False
    warmup: int = 0
    max_repeats: int | None = None

    def as_dict(self) -> dict[str, Any]:
        """Plain-data form (for JSON and other processes)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Task:
        """Inverse of :meth:`as_dict`."""
        return cls(**data)


@dataclass
class Record:
    """The outcome of one repetition of one task.

    Attributes:
        key: the task's key.
        repeat: the repetition index (``-1`` for warm-up runs).
        status: ``"ok"``, ``"error"``, ``"timeout"`` or ``"skipped"``.
        metrics: measured values by metric name.
        series: measured curves by name, as ``[[x, y], ...]`` (e.g. NLL
            against wall time).
        seconds: wall time of the whole repetition, set-up included.
        seed: the seed the repetition ran with.
        rank: the ``torchrun`` rank (0 outside distributed runs).
        error: a one-line description when ``status`` is not ``"ok"``.
        warnings: the warnings the measured code raised, one line each.
    """

    key: str
    repeat: int
    status: str
    metrics: dict[str, float] = field(default_factory=dict)
    series: dict[str, list[list[float]]] = field(default_factory=dict)
    seconds: float = 0.0
    seed: int = 0
    rank: int = 0
    error: str = ""
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """Plain-data form."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Record:
        """Inverse of :meth:`as_dict`."""
        return cls(**data)


def unit_seed(base: int, key: str, repeat: int) -> int:
    """A fixed seed per (run seed, task, repetition), independent of run order."""
    return (base * 1_000_003 + zlib.crc32(key.encode()) + 7919 * (repeat + 1)) % (2**31 - 1)
