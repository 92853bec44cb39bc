"""Running tasks: interleaved repetitions, fixed seeds, a time budget, workers.

Repetitions are run round by round: round ``r`` runs repetition ``r`` of every
task before any task runs repetition ``r + 1``, so slow drift of the machine
(thermal, other load) hits every configuration alike. Each repetition gets the
fixed seed :func:`~flowkit.bench.tasks.unit_seed` of its task and index.

The time budget is respected by never starting a repetition whose expected
duration (the last duration of that task, or the median of its suite's) would
end past the deadline; an isolated repetition (its own process, forked from a
server with torch and flowkit preloaded) is also killed at the deadline. A
repetition that started in-process finishes, so a run can exceed its budget
by at most one repetition's length.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import multiprocessing.context
import os
import statistics
import time
import traceback
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from flowkit.bench.tasks import Record, Task, unit_seed

__all__ = ["RunSettings", "Unit", "execute_unit", "plan_units", "run_tasks"]

ProgressHook = Callable[[Record, Task], None]


@dataclass(frozen=True)
class RunSettings:
    """How to run the tasks.

    Attributes:
        repeats: measured repetitions per task.
        seed: the base seed.
        budget_s: the time budget in seconds (``None``: unlimited).
        workers: parallel worker processes (1: run in this process).
        threads: torch intra-op threads in each process running tasks.
        rank: this process's ``torchrun`` rank (recorded in each record).
    """

    repeats: int = 3
    seed: int = 0
    budget_s: float | None = None
    workers: int = 1
    threads: int = 1
    rank: int = 0


@dataclass(frozen=True)
class Unit:
    """One repetition of one task (``repeat == -1``: a warm-up)."""

    task: Task
    repeat: int


def plan_units(tasks: Sequence[Task], repeats: int) -> list[Unit]:
    """Interleave repetitions: round ``r`` holds repetition ``r`` of every task.

    Warm-ups come in round 0, right before the task's first measured run. The
    task order rotates by one each round so no task is always first. A task
    with ``max_repeats`` drops out of later rounds.
    """
    units: list[Unit] = []
    n = len(tasks)
    for r in range(repeats):
        for i in range(n):
            task = tasks[(i + r) % n]
            if task.max_repeats is not None and r >= task.max_repeats:
                continue
            if r == 0:
                units.extend(Unit(task, -1) for _ in range(task.warmup))
            units.append(Unit(task, r))
    return units


def execute_unit(task_data: dict, repeat: int, seed: int, threads: int, rank: int) -> dict:
    """Run one repetition here and return its record as plain data.

    Never raises for a failure of the measured code: the record's ``status``
    is ``"error"`` with the exception in one line. The unit runs under torch's
    stock default dtype (float32), whatever the caller set, so a repetition
    gives the same numbers here, in a worker and in a subprocess.
    """
    from flowkit.bench.suites import get_suite

    task = Task.from_dict(task_data)
    torch.set_num_threads(threads)
    previous_dtype = torch.get_default_dtype()
    torch.set_default_dtype(torch.float32)
    start = time.perf_counter()
    caught: list[warnings.WarningMessage] = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            values = get_suite(task.suite).run(task, seed)
        metrics = {k: float(v) for k, v in values.items() if not isinstance(v, list)}
        series = {k: v for k, v in values.items() if isinstance(v, list)}
        status, error = "ok", ""
    except Exception as exc:  # reported per task, never hides the run
        metrics, series, status = {}, {}, "error"
        error = f"{type(exc).__name__}: {exc}".splitlines()[0][:500]
        if os.environ.get("FLOWKIT_BENCH_DEBUG"):
            traceback.print_exc()
    finally:
        torch.set_default_dtype(previous_dtype)
    seconds = time.perf_counter() - start
    notes = sorted({f"{w.category.__name__}: {w.message}".splitlines()[0][:300] for w in caught})
    record = Record(task.key, repeat, status, metrics, series, seconds, seed, rank, error, notes)
    return record.as_dict()


_PRELOAD = ["torch", "torchdiffeq", "flowkit.cnf", "flowkit.bench.suites", "flowkit.bench.runner"]
"""Modules the fork server imports once, so each isolated process starts in milliseconds."""


def _isolated_context() -> multiprocessing.context.BaseContext:
    """A fork server with torch and flowkit preloaded where available, else spawn.

    Each isolated repetition is a fresh process forked from a server that has
    run no torch operation (no threads to inherit), so its memory peak is its own.
    """
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(_PRELOAD)
        return context
    return multiprocessing.get_context("spawn")


def _isolated_child(
    conn: Any, task_data: dict, repeat: int, seed: int, threads: int, rank: int
) -> None:
    conn.send(execute_unit(task_data, repeat, seed, threads, rank))
    conn.close()


def _execute_isolated(
    task: Task, repeat: int, seed: int, threads: int, rank: int, timeout: float | None
) -> dict:
    """Run one repetition in a fresh process of its own (a clean memory peak).

    The process is killed when ``timeout`` (what is left of the budget) passes.
    """
    context = _isolated_context()
    receiver, sender = context.Pipe(duplex=False)
    proc = context.Process(
        target=_isolated_child,
        args=(sender, task.as_dict(), repeat, seed, threads, rank),
        daemon=True,
    )
    start = time.perf_counter()
    proc.start()
    sender.close()
    try:
        if receiver.poll(timeout):
            data: dict = receiver.recv()
            proc.join(5.0)
            return data
        status, error = "timeout", "killed at the time budget"
    except EOFError:
        status, error = "error", f"the isolated process died (exit code {proc.exitcode})"
    finally:
        if proc.is_alive():
            proc.kill()
        proc.join(5.0)
        receiver.close()
    seconds = time.perf_counter() - start
    return Record(task.key, repeat, status, {}, {}, seconds, seed, rank, error).as_dict()


def _run_unit(unit: Unit, settings: RunSettings, timeout: float | None) -> dict:
    seed = unit_seed(settings.seed, unit.task.key, unit.repeat)
    if unit.task.isolate:
        return _execute_isolated(
            unit.task, unit.repeat, seed, settings.threads, settings.rank, timeout
        )
    return execute_unit(unit.task.as_dict(), unit.repeat, seed, settings.threads, settings.rank)


def _pool_unit(task_data: dict, repeat: int, settings: RunSettings, timeout: float | None) -> dict:
    return _run_unit(Unit(Task.from_dict(task_data), repeat), settings, timeout)


class _Estimator:
    """Expected duration of the next repetition of a task."""

    def __init__(self) -> None:
        self.by_task: dict[str, float] = {}
        self.by_suite: dict[str, list[float]] = {}

    def expect(self, task: Task) -> float:
        """The task's last duration; for an unseen task, its suite's median so far."""
        if task.key in self.by_task:
            return self.by_task[task.key]
        seen = self.by_suite.get(task.suite)
        return statistics.median(seen) if seen else 0.0

    def update(self, task: Task, seconds: float) -> None:
        self.by_task[task.key] = seconds
        self.by_suite.setdefault(task.suite, []).append(seconds)


def run_tasks(
    tasks: Sequence[Task],
    settings: RunSettings,
    *,
    progress: ProgressHook | None = None,
) -> list[Record]:
    """Run every repetition of ``tasks`` (interleaved) within the time budget.

    Arguments:
        tasks: the tasks, in a deterministic order.
        settings: repeats, seed, budget, workers, threads.
        progress: called after every unit with its record and task.

    Returns:
        One record per unit, warm-ups included (``repeat == -1``); units that
        did not fit in the budget get a ``"skipped"`` record.
    """
    units = plan_units(tasks, settings.repeats)
    deadline = None if settings.budget_s is None else time.monotonic() + settings.budget_s
    estimator = _Estimator()
    records: list[Record] = []

    def fits(unit: Unit) -> bool:
        return deadline is None or time.monotonic() + estimator.expect(unit.task) < deadline

    def timeout_left() -> float | None:
        return None if deadline is None else max(deadline - time.monotonic(), 0.1)

    def finish(unit: Unit, data: dict) -> None:
        record = Record.from_dict(data)
        if record.status == "ok":
            estimator.update(unit.task, record.seconds)
        records.append(record)
        if progress is not None:
            progress(record, unit.task)

    def skip(unit: Unit) -> None:
        seed = unit_seed(settings.seed, unit.task.key, unit.repeat)
        finish(
            unit,
            Record(
                unit.task.key,
                unit.repeat,
                "skipped",
                seed=seed,
                rank=settings.rank,
                error="not started: the time budget would be exceeded",
            ).as_dict(),
        )

    if settings.workers <= 1:
        for unit in units:
            if fits(unit):
                finish(unit, _run_unit(unit, settings, timeout_left()))
            else:
                skip(unit)
        return records

    context = multiprocessing.get_context("spawn")
    with cf.ProcessPoolExecutor(max_workers=settings.workers, mp_context=context) as pool:
        pending = list(units)
        running: dict[cf.Future, Unit] = {}
        while pending or running:
            while pending and len(running) < settings.workers:
                unit = pending.pop(0)
                if not fits(unit):
                    skip(unit)
                    continue
                future = pool.submit(
                    _pool_unit, unit.task.as_dict(), unit.repeat, settings, timeout_left()
                )
                running[future] = unit
            if not running:
                continue
            done, _ = cf.wait(running, return_when=cf.FIRST_COMPLETED)
            for future in done:
                finish(running.pop(future), future.result())
    return records
