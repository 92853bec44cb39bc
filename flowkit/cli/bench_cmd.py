"""``flowkit bench``: compare components and peers on the same work, with a report.

User errors (a bad selection, an unwritable ``--out``) are reported in one line
by the application's root group (:mod:`flowkit.cli.errors`), before any measurement.
"""

from __future__ import annotations

from pathlib import Path

import typer

from flowkit.bench.api import DEFAULT_BUDGET_S, BenchConfig, run_bench
from flowkit.bench.report.files import check_report_dir
from flowkit.bench.selection import Selection, parse_patterns
from flowkit.cli.errors import CliUsageError

__all__ = ["bench"]

_PATTERN_HELP = "Names or glob patterns, comma-separated (default: the suite's selection)."


def bench(
    suites: str = typer.Option(
        None,
        "--suites",
        "-s",
        help="Suites to run, comma-separated: accuracy, speed, memory, training "
        "(default: every available suite).",
        show_default=False,
    ),
    fields: str = typer.Option(None, "--fields", help=f"Vector fields. {_PATTERN_HELP}"),
    integrators: str = typer.Option(None, "--integrators", help=f"Integrators. {_PATTERN_HELP}"),
    traces: str = typer.Option(None, "--traces", help=f"Trace estimators. {_PATTERN_HELP}"),
    gradients: str = typer.Option(
        None, "--gradients", help=f"Gradient strategies. {_PATTERN_HELP}"
    ),
    objectives: str = typer.Option(
        None,
        "--objectives",
        help="Training objectives compared by the training suite, e.g. "
        f"'maximum_likelihood,flow_matching'. {_PATTERN_HELP}",
    ),
    peers: str = typer.Option(
        None,
        "--peers",
        help="Peers to compare with: torchdiffeq_plain, zuko, torchdyn, or 'none' (default: all).",
    ),
    repeats: int = typer.Option(3, "--repeats", "-r", min=1, help="Measured repetitions per task."),
    budget: float = typer.Option(
        DEFAULT_BUDGET_S,
        "--budget",
        min=0.0,
        help="Time budget in seconds for the whole run; 0 for none.",
    ),
    seed: int = typer.Option(0, "--seed", help="Base seed of every repetition."),
    workers: int = typer.Option(1, "--workers", "-w", min=1, help="Parallel worker processes."),
    threads: int = typer.Option(1, "--threads", min=1, help="Torch threads per process."),
    quick: bool = typer.Option(False, "--quick", help="Small problems: a smoke run in seconds."),
    dtype: str = typer.Option("float32", "--dtype", help="float32 or float64 (speed, memory)."),
    device: str = typer.Option("cpu", "--device", help="Torch device, e.g. cpu or cuda."),
    out: str = typer.Option("bench-out", "--out", "-o", help="Directory for the report."),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Replace a report already in --out (refused otherwise)."
    ),
    plots: bool = typer.Option(True, "--plots/--no-plots", help="Write PNG plots."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
) -> None:
    """Benchmark every selected combination side by side with peer libraries.

    With no options: a representative selection of every suite that finishes
    in under 3 minutes on 2 cores and writes report.json, report.csv,
    report.md and PNG plots to bench-out/. Under torchrun, each rank runs its
    share and rank 0 writes the report.
    """
    if dtype not in ("float32", "float64"):
        raise CliUsageError(f"--dtype must be float32 or float64, got {dtype!r}.")
    check_report_dir(Path(out), overwrite=overwrite)
    peer_names = parse_patterns(peers)
    if peer_names == ("none",):
        peer_names = ()
    config = BenchConfig(
        suites=parse_patterns(suites),
        selection=Selection(
            fields=parse_patterns(fields),
            integrators=parse_patterns(integrators),
            traces=parse_patterns(traces),
            gradients=parse_patterns(gradients),
            objectives=parse_patterns(objectives),
        ),
        repeats=repeats,
        seed=seed,
        budget_s=budget or None,
        workers=workers,
        threads=threads,
        quick=quick,
        peers=peer_names,
        dtype=dtype,
        device=device,
        out=Path(out),
        overwrite=overwrite,
        plots=plots,
        progress=progress,
    )
    report = run_bench(config)
    if report is not None:
        typer.echo(f"Report written to {out}/ (report.md, report.json, report.csv, plots).")
