"""``flowkit bench``: every combination measured on the same work, beside peer libraries.

Layout (one concept per module):

* :mod:`~flowkit.bench.selection` -- names/globs to compatible combinations;
* :mod:`~flowkit.bench.suites` -- ``accuracy``, ``speed``, ``memory``, ``training``;
* :mod:`~flowkit.bench.tasks`, :mod:`~flowkit.bench.runner` -- units of work,
  interleaved repetitions, seeds, the time budget, worker processes,
  per-configuration subprocesses;
* :mod:`~flowkit.bench.distributed` -- ``torchrun`` ranks, rank 0 gathers;
* :mod:`~flowkit.bench.timing` -- the one timer, synchronizing CUDA devices;
* :mod:`~flowkit.bench.aggregate` -- medians, spreads, ratios;
* :mod:`~flowkit.bench.report` -- terminal table, JSON, CSV, Markdown, PNG plots;
* :mod:`~flowkit.bench.peers` -- plain torchdiffeq, zuko, torchdyn CNFs;
* :mod:`~flowkit.bench.assets` -- the shipped trained toy fields.
"""

from flowkit.bench.api import DEFAULT_BUDGET_S, BenchConfig, plan_tasks, run_bench
from flowkit.bench.report.schema import SCHEMA, validate_report
from flowkit.bench.selection import BenchSelectionError, Selection

__all__ = [
    "DEFAULT_BUDGET_S",
    "SCHEMA",
    "BenchConfig",
    "BenchSelectionError",
    "Selection",
    "plan_tasks",
    "run_bench",
    "validate_report",
]
