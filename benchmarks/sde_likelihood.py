"""Benchmark: the probability-flow likelihood at d = 64, Hutchinson vs the exact trace.

Question (issue 14's likelihood goal): on digits (d = 64, uniform dequantisation,
bits/dim from the data set's ``bits_per_dim``), does the probability-flow
log-likelihood of a score model with Hutchinson's estimator (1 Rademacher probe
per sample) cost at most 0.5x the exact trace's time, with its mean inside 4
standard errors of the exact value?

Model: the registered ``probability_flow`` field (score network ``mlp``,
``--hidden`` widths, SDE ``vp``, noise parametrisation), trained for
``--train-seconds`` with the registered ``score_matching`` objective (Adam
``--lr``, batches of ``--batch`` freshly dequantised training digits);
``--train-seconds 0`` measures a randomly initialised field instead. The JSON
says which (``score_model``).

Measurement: the held-out test digits' log-likelihood (the first ``--n-points``
of the test split, one batch) through ``CNF.log_prob`` with ``--integrator``
at ``rtol = atol = --tol``, gradient strategy ``backprop`` under
``torch.no_grad()``, for the trace estimators ``exact`` and ``hutchinson``
(``n_probes = 1``). ``--reps`` repetitions, interleaved (each repetition runs
both, alternating which goes first), one thread, in one process; medians and
the ratio ``hutchinson / exact`` of the median times are reported, with the
function evaluations of each solve. Every Hutchinson repetition draws fresh
probes, so the repetitions give independent estimates of the batch's mean NLL:
their mean, standard error (``std / sqrt(reps)``) and distance from the exact
value in standard errors.

Results go to ``--out`` (default ``bench-out/sde_likelihood.json``); an existing
file is not overwritten without ``--overwrite``. A summary is printed.

Usage:
    python benchmarks/sde_likelihood.py --help
    python benchmarks/sde_likelihood.py --quick           # a smoke run (seconds)
    python benchmarks/sde_likelihood.py                   # the goal's measurement
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

from flowkit import CNF
from flowkit.bench.timing import stopwatch
from flowkit.data import load_dataset
from flowkit.registry import Registry, get_registry

__all__ = ["UsageError", "main", "measure", "train"]

TIME_RATIO_GOAL = 0.5
"""Hutchinson's median time over the exact trace's, at most (issue 14)."""

STANDARD_ERRORS_GOAL = 4.0
"""Hutchinson's mean NLL within this many standard errors of the exact NLL."""


class UsageError(Exception):
    """A bad command-line choice; reported as one line, exit status 2."""


def _field_options(hidden: list[int]) -> dict[str, Any]:
    return {
        "score_field": "mlp",
        "score_field_options": {"hidden": hidden, "activation": "softplus"},
        "sde": "vp",
        "parametrisation": "noise",
    }


def train(
    model: CNF,
    splits: Any,
    *,
    seconds: float,
    batch: int,
    lr: float,
    seed: int,
    registry: Registry,
) -> dict[str, Any]:
    """Train the model's score network with ``score_matching`` for ``seconds`` of wall time."""
    if seconds <= 0:
        return {"kind": "random initialisation (untrained)", "seconds": 0.0, "iterations": 0}
    objective = registry.create("objective", "score_matching")
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    n_train = splits.train.shape[0]
    losses: list[float] = []
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        indices = torch.randint(n_train, (batch,), generator=gen)
        data = splits.train_batch(indices, gen).to(torch.get_default_dtype())
        result = objective.loss(model, data, generator=gen)
        optimizer.zero_grad(set_to_none=True)
        result.loss.backward()
        optimizer.step()
        losses.append(float(result.loss.detach()))
    tail = losses[-50:]
    return {
        "kind": "trained with the score_matching objective",
        "seconds": time.perf_counter() - start,
        "iterations": len(losses),
        "first_loss": losses[0],
        "final_loss_mean_last_50": sum(tail) / len(tail),
        "batch": batch,
        "lr": lr,
    }


def measure(
    field: torch.nn.Module,
    points: torch.Tensor,
    *,
    integrator: str,
    integrator_options: dict[str, Any],
    reps: int,
    seed: int,
    registry: Registry,
) -> dict[str, Any]:
    """Time ``exact`` and ``hutchinson`` log-likelihoods, interleaved; return the records."""
    dim = points.shape[1]
    options = dict(integrator_options)
    models = {
        "exact": CNF(
            field,
            integrator,
            "exact",
            "backprop",
            dim=dim,
            integrator_options=options,
            registry=registry,
        ),
        "hutchinson": CNF(
            field,
            integrator,
            "hutchinson",
            "backprop",
            dim=dim,
            integrator_options=options,
            trace_options={"n_probes": 1},
            seed=seed,
            registry=registry,
        ),
    }
    names = list(models)
    times: dict[str, list[float]] = {n: [] for n in names}
    nfe: dict[str, list[int]] = {n: [] for n in names}
    nll: dict[str, list[float]] = {n: [] for n in names}
    with torch.no_grad():
        for name in names:  # warm-up, not timed
            models[name].log_prob(points[:2])
        for r in range(reps):
            for name in names if r % 2 == 0 else names[::-1]:
                with stopwatch(points) as clock:
                    log_prob = models[name].log_prob(points)
                times[name].append(clock.seconds)
                stats = models[name].last_stats
                nfe[name].append(int(stats.nfe) if stats is not None else -1)
                nll[name].append(float(-log_prob.mean()))
    medians = {n: statistics.median(times[n]) for n in names}
    exact_nll = statistics.median(nll["exact"])
    hutch = nll["hutchinson"]
    hutch_mean = sum(hutch) / len(hutch)
    std_error = statistics.stdev(hutch) / math.sqrt(len(hutch)) if len(hutch) > 1 else math.inf
    z = abs(hutch_mean - exact_nll) / std_error if std_error > 0 else math.inf
    ratio = medians["hutchinson"] / medians["exact"]
    return {
        "times_s": times,
        "median_s": medians,
        "nfe": nfe,
        "nll_per_rep": nll,
        "exact_nll": exact_nll,
        "exact_nll_spread": max(nll["exact"]) - min(nll["exact"]),
        "hutchinson_mean_nll": hutch_mean,
        "hutchinson_std_error": std_error,
        "hutchinson_z": z,
        "time_ratio_hutchinson_over_exact": ratio,
        "goal_time_ratio_met": ratio <= TIME_RATIO_GOAL,
        "goal_unbiased_met": z <= STANDARD_ERRORS_GOAL,
    }


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="A smoke run of a few seconds.")
    parser.add_argument("--train-seconds", type=float, default=60.0, help="0: untrained field.")
    parser.add_argument("--hidden", type=int, nargs="+", default=[256, 256])
    parser.add_argument("--batch", type=int, default=256, help="Training batch size.")
    parser.add_argument("--lr", type=float, default=2e-3, help="Adam's learning rate.")
    parser.add_argument("--n-points", type=int, default=64, help="Test digits evaluated.")
    parser.add_argument("--integrator", default="dopri5")
    parser.add_argument("--tol", type=float, default=1e-5, help="rtol = atol of the solve.")
    parser.add_argument("--reps", type=int, default=7, help="Interleaved repetitions.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("bench-out/sde_likelihood.json"))
    parser.add_argument("--overwrite", action="store_true", help="Replace an existing --out.")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run from the command line; a usage error is one line on stderr, exit status 2."""
    try:
        return _main(argv)
    except UsageError as exc:
        print(f"sde_likelihood.py: error: {exc}", file=sys.stderr)
        return 2


def _main(argv: list[str] | None) -> int:
    args = _parser().parse_args(argv)
    if args.quick:
        args.train_seconds, args.hidden, args.n_points, args.reps = 2.0, [32], 8, 3
        if args.out == Path("bench-out/sde_likelihood.json"):
            args.out = Path("bench-out/sde_likelihood-quick.json")
    if args.out.exists() and not args.overwrite:
        raise UsageError(
            f"{args.out} exists; pass --overwrite to replace it, or choose another --out."
        )
    for name in ("n_points", "reps", "batch"):
        if getattr(args, name) < (2 if name == "reps" else 1):
            raise UsageError(f"--{name.replace('_', '-')} is too small: {getattr(args, name)}.")
    if not (args.tol > 0 and args.train_seconds >= 0 and args.lr > 0):
        raise UsageError("--tol and --lr must be positive, --train-seconds at least 0.")
    registry = get_registry()
    if args.integrator not in registry.names("integrator"):
        known = ", ".join(registry.names("integrator"))
        raise UsageError(f"unknown --integrator {args.integrator!r}; choose from: {known}.")
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    splits = load_dataset("digits", seed=args.seed)
    model = CNF(
        "probability_flow",
        "dopri5",
        "exact",
        "backprop",
        dim=splits.dim,
        field_options=_field_options(args.hidden),
        registry=registry,
    )
    print(f"sde_likelihood: training {args.train_seconds:g} s with score_matching", flush=True)
    trained = train(
        model,
        splits,
        seconds=args.train_seconds,
        batch=args.batch,
        lr=args.lr,
        seed=args.seed,
        registry=registry,
    )
    model.eval()
    points = splits.test[: args.n_points].to(torch.get_default_dtype())
    print(f"sde_likelihood: timing {args.reps} interleaved repetitions", flush=True)
    result = measure(
        model.field,
        points,
        integrator=args.integrator,
        integrator_options={"rtol": args.tol, "atol": args.tol},
        reps=args.reps,
        seed=args.seed,
        registry=registry,
    )
    for key in ("exact_nll", "hutchinson_mean_nll"):
        result[key.replace("nll", "bits_per_dim")] = splits.bits_per_dim(result[key])
    record = {
        "benchmark": "sde_likelihood",
        "question": __doc__.splitlines()[0],
        "command": sys.argv if argv is None else ["benchmarks/sde_likelihood.py", *argv],
        "config": {
            "dataset": "digits",
            "dim": splits.dim,
            "n_points": points.shape[0],
            "field": "probability_flow",
            "field_options": _field_options(args.hidden),
            "integrator": args.integrator,
            "tol": args.tol,
            "reps": args.reps,
            "seed": args.seed,
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "machine": platform.machine(),
            "quick": args.quick,
        },
        "score_model": trained,
        "goals": {"time_ratio_at_most": TIME_RATIO_GOAL, "within_std_errors": STANDARD_ERRORS_GOAL},
        "results": result,
    }
    _print_summary(record)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


def _print_summary(record: dict[str, Any]) -> None:
    res = record["results"]
    print(f"score model: {record['score_model']['kind']}")
    for name in ("exact", "hutchinson"):
        nfe = statistics.median(res["nfe"][name])
        print(f"  {name:>10}: median {res['median_s'][name]:.3f} s, median nfe {nfe:g}")
    ratio, z = res["time_ratio_hutchinson_over_exact"], res["hutchinson_z"]
    print(
        f"time ratio hutchinson/exact {ratio:.3f} (goal <= {TIME_RATIO_GOAL}): "
        f"{'MET' if res['goal_time_ratio_met'] else 'NOT MET'}"
    )
    print(
        f"NLL exact {res['exact_nll']:.4f} nats ({res['exact_bits_per_dim']:.4f} bits/dim), "
        f"hutchinson {res['hutchinson_mean_nll']:.4f} +- {res['hutchinson_std_error']:.4f} "
        f"({res['hutchinson_mean_bits_per_dim']:.4f} bits/dim): {z:.2f} standard errors apart "
        f"(goal <= {STANDARD_ERRORS_GOAL}): {'MET' if res['goal_unbiased_met'] else 'NOT MET'}"
    )


if __name__ == "__main__":
    sys.exit(main())
