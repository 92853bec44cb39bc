"""The benchmark as a function: plan the suites, run the tasks, gather, report.

:func:`run_bench` is what ``flowkit bench`` calls. Under ``torchrun`` every
rank plans the same tasks, runs its share, and rank 0 gathers every record
and writes the one report (:mod:`flowkit.bench.distributed`).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from flowkit.bench.aggregate import aggregate
from flowkit.bench.distributed import finalize, gather_to_rank0, init_distributed, shard
from flowkit.bench.report import build_report, print_report, write_report
from flowkit.bench.report.files import check_report_dir
from flowkit.bench.runner import RunSettings, plan_units, run_tasks
from flowkit.bench.selection import BenchSelectionError, Selection, select_objectives
from flowkit.bench.suites import PlanContext, available_suites, get_suite
from flowkit.bench.tasks import Record, Task
from flowkit.registry import Registry, get_registry

__all__ = ["DEFAULT_BUDGET_S", "BenchConfig", "plan_tasks", "run_bench"]

DEFAULT_BUDGET_S = 150.0
"""The default time budget: the built-in selection finishes well inside it."""

_REPORT_RESERVE_S = 12.0


@dataclass(frozen=True)
class BenchConfig:
    """Everything a benchmark run is asked to do.

    Attributes:
        suites: suite names (``None``: every available suite).
        selection: component patterns per kind (``None`` per kind: the
            suite's representative default).
        repeats: measured repetitions per task.
        seed: the base seed of every repetition.
        budget_s: the time budget in seconds (``None``: unlimited).
        workers: parallel worker processes on this machine.
        threads: torch threads per process running tasks.
        quick: small problems (smoke runs and tests).
        peers: peer names to include (``None``: all known).
        dtype: ``"float32"`` or ``"float64"`` (speed and memory suites).
        device: torch device for the measured work.
        out: directory for the report files (``None``: write nothing). A
            folder that already holds a report is refused before any work
            unless ``overwrite``.
        overwrite: replace a report already in ``out``.
        plots: draw the PNG plots.
        progress: show a progress bar.
        show: print the report's tables.
    """

    suites: tuple[str, ...] | None = None
    selection: Selection = field(default_factory=Selection)
    repeats: int = 3
    seed: int = 0
    budget_s: float | None = DEFAULT_BUDGET_S
    workers: int = 1
    threads: int = 1
    quick: bool = False
    peers: tuple[str, ...] | None = None
    dtype: str = "float32"
    device: str = "cpu"
    out: Path | None = Path("bench-out")
    overwrite: bool = False
    plots: bool = True
    progress: bool = True
    show: bool = True

    def settings(self, world_size: int) -> dict[str, Any]:
        """The JSON form recorded in the report."""
        data = asdict(self)
        data["selection"] = self.selection.as_dict()
        data["out"] = str(self.out) if self.out is not None else None
        data["suites"] = list(self.suites) if self.suites is not None else None
        data["peers"] = list(self.peers) if self.peers is not None else None
        data["world_size"] = world_size
        return data


@dataclass
class _Planned:
    suites: list[str]
    tasks: list[Task]
    excluded: list[dict[str, str]]
    notes: list[str]


def plan_tasks(config: BenchConfig, registry: Registry | None = None) -> _Planned:
    """Plan every requested suite; deterministic for a given config and registry.

    Raises:
        BenchSelectionError: for an unknown suite, a pattern matching nothing,
            an incompatible explicit choice; with the default suites, only when
            no suite can run the selection.
    """
    registry = registry or get_registry()
    if config.repeats < 1:
        raise BenchSelectionError(f"repeats must be at least 1, got {config.repeats}.")
    from flowkit.bench.peers import PEERS

    unknown = [p for p in (config.peers or ()) if p not in PEERS]
    if unknown:
        raise BenchSelectionError(
            f"Unknown peer(s) {', '.join(map(repr, unknown))}; peers: {', '.join(PEERS)} "
            "(or --peers none)."
        )
    explicit = config.suites is not None
    names = list(config.suites) if explicit else available_suites()
    if config.selection.objectives is not None:  # only one suite reads them: check them here
        select_objectives(registry, config.selection, ())
        if "training" not in names:
            raise BenchSelectionError(
                "--objectives selects the objectives of the training suite, which is not "
                "among the suites run; add training to --suites or drop --objectives."
            )
    ctx = PlanContext(
        registry,
        config.selection,
        quick=config.quick,
        peers=config.peers,
        dtype=config.dtype,
        device=config.device,
    )
    planned = _Planned([], [], [], [])
    per_suite: list[list[Task]] = []
    errors = []
    for name in names:
        suite = get_suite(name)
        try:
            plan = suite.plan(ctx)
        except BenchSelectionError as exc:
            if explicit:
                raise BenchSelectionError(f"suite {name!r}: {exc}") from None
            errors.append(f"suite {name!r} skipped: {exc}")
            continue
        planned.suites.append(name)
        per_suite.append(plan.tasks)
        planned.excluded.extend({"id": f"{name}/{i}", "reason": r} for i, r in plan.excluded)
        planned.notes.extend(plan.notes)
    # Round-robin across suites: under a tight budget every suite gets measured.
    longest = max((len(t) for t in per_suite), default=0)
    planned.tasks = [t[i] for i in range(longest) for t in per_suite if i < len(t)]
    if not planned.suites:
        raise BenchSelectionError("No suite can run this selection: " + " | ".join(errors))
    planned.notes.extend(errors)
    return planned


def _progress_bar(total: int, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="flowkit bench", unit="run", disable=not enabled, leave=False)


def run_bench(config: BenchConfig, registry: Registry | None = None) -> dict[str, Any] | None:
    """Run the benchmark and return the report (``None`` on ranks other than 0).

    The report is printed (``config.show``) and written to ``config.out``
    (``report.json``, ``report.csv``, ``report.md``, PNG plots).

    Raises:
        BenchSelectionError: for a selection that cannot run (see :func:`plan_tasks`).
    """
    started = time.monotonic()
    ctx = init_distributed()
    try:
        if config.out is not None and ctx.is_main:  # before any work: nothing is lost
            check_report_dir(Path(config.out), overwrite=config.overwrite)
        torch.set_num_threads(config.threads)
        planned = plan_tasks(config, registry)
        mine = shard(planned.tasks, ctx)
        budget = config.budget_s
        if budget is not None:
            budget = max(budget - (time.monotonic() - started) - _REPORT_RESERVE_S, 0.0)
        settings = RunSettings(
            repeats=config.repeats,
            seed=config.seed,
            budget_s=budget,
            workers=config.workers,
            threads=config.threads,
            rank=ctx.rank,
        )
        bar = _progress_bar(len(plan_units(mine, config.repeats)), config.progress and ctx.is_main)

        def tick(record: Record, task: Task) -> None:
            bar.set_postfix_str(task.key[-60:], refresh=False)
            bar.update(1)

        try:
            records = run_tasks(mine, settings, progress=tick)
        finally:
            bar.close()
        gathered = gather_to_rank0([r.as_dict() for r in records], ctx)
        if not ctx.is_main or gathered is None:
            return None
        all_records = [Record.from_dict(r) for part in gathered for r in part]
        report = _assemble(config, planned, all_records, ctx.world_size, started)
        if config.show:
            print_report(report)
        if config.out is not None:
            write_report(report, Path(config.out), plots=config.plots)
        return report
    finally:
        finalize(ctx)


def _assemble(
    config: BenchConfig,
    planned: _Planned,
    records: list[Record],
    world_size: int,
    started: float,
) -> dict[str, Any]:
    results = aggregate(planned.tasks, records)
    ratios: list[dict[str, Any]] = []
    goals: list[dict[str, Any]] = []
    suites: dict[str, Any] = {}
    for name in planned.suites:
        suite = get_suite(name)
        suites[name] = {
            "question": suite.question,
            "metrics": [asdict(m) for m in suite.metrics],
        }
        r, g = suite.derive([res for res in results if res["suite"] == name])
        ratios.extend(r)
        goals.extend(g)
    notes = list(planned.notes)
    skipped = sum(1 for r in records if r.status == "skipped")
    if skipped:
        notes.append(
            f"{skipped} repetition(s) not started: the time budget of {config.budget_s} s "
            "would have been exceeded (raise --budget, or select less)"
        )
    failed = [r for r in results if r["status"] in ("error", "timeout")]
    for res in failed:
        notes.append(f"{res['key']} failed: {'; '.join(res['errors'])}")
    for res in results:
        for warning in res["warnings"]:
            notes.append(f"{res['key']} warned: {warning}")
    if config.workers > 1:
        notes.append(
            f"{config.workers} worker processes shared the machine: timings include contention"
        )
    settings = config.settings(world_size)
    settings["suites_requested"] = settings["suites"]
    settings["suites"] = list(planned.suites)
    return build_report(
        settings=settings,
        suites=suites,
        results=results,
        ratios=ratios,
        goals=goals,
        excluded=planned.excluded,
        notes=notes,
        duration_s=time.monotonic() - started,
        device=config.device,
    )
