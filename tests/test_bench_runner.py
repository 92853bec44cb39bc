"""The runner: interleaving, seeds, the time budget, worker processes."""

from __future__ import annotations

import time

import pytest

from flowkit.bench import BenchConfig, Selection, plan_tasks
from flowkit.bench.runner import RunSettings, plan_units, run_tasks
from flowkit.bench.suites import get_suite
from flowkit.bench.tasks import Task, unit_seed


def _task(key: str, **kw: object) -> Task:
    return Task("accuracy", key, "flowkit", {}, **kw)  # type: ignore[arg-type]


def test_units_are_interleaved_round_by_round() -> None:
    a, b, c = _task("a", warmup=1), _task("b"), _task("c", max_repeats=1)
    units = [(u.task.key, u.repeat) for u in plan_units([a, b, c], 3)]
    assert units == [
        ("a", -1), ("a", 0), ("b", 0), ("c", 0),
        ("b", 1), ("a", 1),
        ("a", 2), ("b", 2),
    ]  # fmt: skip


def test_seeds_are_fixed_and_distinct() -> None:
    assert unit_seed(0, "x", 1) == unit_seed(0, "x", 1)
    seeds = {unit_seed(s, k, r) for s in (0, 1) for k in ("x", "y") for r in (-1, 0, 1)}
    assert len(seeds) == 12


def _accuracy_tasks() -> list[Task]:
    config = BenchConfig(
        suites=("accuracy",),
        selection=Selection(
            integrators=("rk4", "dopri5"), traces=("analytic",), gradients=("backprop",)
        ),
        quick=True,
    )
    return plan_tasks(config).tasks


def test_time_budget_is_respected(monkeypatch: pytest.MonkeyPatch) -> None:
    tasks = _accuracy_tasks()
    run_tasks(tasks[:1], RunSettings(repeats=1))  # one-time imports stay out of the timing
    suite = get_suite("accuracy")
    real_run = suite.run
    minimum = 0.05  # each repetition takes at least this long, on any machine

    def slow_run(task: Task, seed: int) -> dict:
        start = time.monotonic()
        values = real_run(task, seed)
        time.sleep(max(minimum - (time.monotonic() - start), 0.0))
        return values

    monkeypatch.setattr(suite, "run", slow_run)
    budget, repeats = 2.0, 200
    assert len(tasks) * repeats * minimum > 4 * budget  # the work cannot fit in the budget
    start = time.monotonic()
    records = run_tasks(tasks, RunSettings(repeats=repeats, budget_s=budget))
    elapsed = time.monotonic() - start
    longest = max(r.seconds for r in records if r.status == "ok")
    assert elapsed <= budget + longest + 0.25
    statuses = {r.status for r in records}
    assert "skipped" in statuses and "ok" in statuses
    skipped = [r for r in records if r.status == "skipped"]
    assert all("time budget" in r.error for r in skipped)


def test_workers_give_the_same_measurements_as_one_process() -> None:
    tasks = _accuracy_tasks()
    serial = run_tasks(tasks, RunSettings(repeats=1, seed=3))
    parallel = run_tasks(tasks, RunSettings(repeats=1, seed=3, workers=2))
    assert all(r.status == "ok" for r in serial + parallel)

    def errors(records: list) -> dict:
        return {(r.key, r.repeat): (r.seed, r.metrics["logp_error"]) for r in records}

    assert errors(serial) == errors(parallel)


def test_isolated_repetition_is_killed_at_the_deadline() -> None:
    config = BenchConfig(suites=("memory",), selection=Selection(gradients=("backprop",)))
    task = plan_tasks(config).tasks[-1]
    assert task.isolate
    start = time.monotonic()
    (record,) = run_tasks([task], RunSettings(repeats=1, budget_s=0.3))
    assert time.monotonic() - start < 0.3 + 6.0  # the kill, plus joining the process
    assert record.status == "timeout" and "budget" in record.error
