"""Benchmark: what does a divergence cost per trace estimator, and how noisy is it?

Question: on an MLP field (widths 64-64-64, tanh) with a batch of 512, how long
does one divergence call take for each registered trace estimator at
d in {2, 8, 32, 64, 128}, and what variance do the stochastic ones have? How
much faster is the vectorised ``exact`` than the per-dimension ``exact_loop``
(goal: at least 3x at d >= 32)? ``analytic`` is the MLP's own closed-form
divergence (Jacobian accumulation through the layers, no vector-Jacobian
products), reported with its ratio to ``exact_loop`` too.

Two modes are timed: ``no_grad`` (an estimate under ``torch.no_grad()``, as in
sampling and evaluation) and ``train`` (an estimate with its second-order graph
plus the backward pass of the divergence to the parameters, as in training).
Estimators are timed interleaved (each repetition runs every estimator once,
in a rotating order) in one process with one thread; medians are reported,
with the ratio ``exact_loop / exact``. Variance: the per-sample variance of the
estimate over independent probe draws, averaged over the batch (0 for exact
estimators), next to the mean squared exact trace for scale; Hutchinson is
also run with Hutch++'s budget of vector-Jacobian products
(``hutchinson_x3``) so that the two can be compared at equal cost.

Usage:
    python benchmarks/traces.py            # full run, writes bench-out/traces.json
    python benchmarks/traces.py --quick    # a smoke run in a few seconds
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
from pathlib import Path
from typing import Any

import torch

from flowkit import Registry, check_compatibility, get_registry
from flowkit.bench.timing import stopwatch

__all__ = ["main", "run"]


def _estimators(registry: Any) -> dict[str, Any]:
    """Every registered estimator the compatibility function accepts for an MLP field."""
    field = registry.get("vector_field", "mlp")
    out = {
        spec.name: registry.create("trace_estimator", spec.name)
        for spec in registry.specs("trace_estimator")
        if check_compatibility(field=field, trace=spec).ok
    }
    if "hutchinson" in out and "hutchpp" in out:
        # Hutchinson at Hutch++'s budget of vector-Jacobian products: the fair variance pair
        budget = out["hutchpp"].n_probes
        out[f"hutchinson_x{budget}"] = registry.create(
            "trace_estimator", "hutchinson", n_probes=budget
        )
    return out


def _one_call(estimator: Any, field: Any, t: torch.Tensor, x: torch.Tensor, mode: str) -> None:
    probes = estimator.sample_probes(x)
    if mode == "no_grad":
        with torch.no_grad():
            estimator.estimate(field, t, x, probes)
    else:
        _, div = estimator.estimate(field, t, x, probes)
        div.sum().backward()


def run(
    dims: list[int],
    batch: int,
    reps: int,
    draws: int,
    hidden: tuple[int, ...],
    seed: int,
    registry: Registry,
) -> dict[str, Any]:
    """Time and measure every estimator at every ``dim``; returns the JSON record."""
    estimators = _estimators(registry)
    names = sorted(estimators)
    results: list[dict[str, Any]] = []
    for dim in dims:
        torch.manual_seed(seed)
        field = registry.create("vector_field", "mlp", dim=dim, hidden=hidden)
        x = torch.randn(batch, dim)
        t = torch.tensor(0.5)
        exact_trace = estimators["exact"].estimate(field, t, x)[1].detach()
        for mode in ("no_grad", "train"):
            for name in names:  # warm-up (torch.func's first call is slow)
                _one_call(estimators[name], field, t, x, mode)
            times: dict[str, list[float]] = {n: [] for n in names}
            for r in range(reps):
                order = names[r % len(names) :] + names[: r % len(names)]
                for name in order:
                    field.zero_grad(set_to_none=True)
                    with stopwatch(x, field) as clock:
                        _one_call(estimators[name], field, t, x, mode)
                    times[name].append(clock.seconds)
            medians = {n: statistics.median(v) for n, v in times.items()}
            for name in names:
                row: dict[str, Any] = {
                    "dim": dim,
                    "mode": mode,
                    "estimator": name,
                    "median_s": medians[name],
                    "times_s": times[name],
                }
                if name in ("exact", "analytic") and "exact_loop" in medians:
                    row["speedup_vs_exact_loop"] = medians["exact_loop"] / medians[name]
                results.append(row)
        mean_sq_trace = float(exact_trace.pow(2).mean())
        for name in names:
            est = estimators[name]
            if type(est).stochastic:
                gen = torch.Generator().manual_seed(seed)
                with torch.no_grad():
                    vals = torch.stack(
                        [
                            est.estimate(field, t, x, est.sample_probes(x, gen))[1]
                            for _ in range(draws)
                        ]
                    )
                variance = float(vals.var(0).mean())
                bias_z = float(
                    ((vals.mean(0) - exact_trace) / (vals.std(0) / draws**0.5)).abs().mean()
                )
            else:
                variance, bias_z = 0.0, 0.0
            for row in results:
                if row["dim"] == dim and row["estimator"] == name:
                    row["variance"] = variance
                    row["mean_squared_trace"] = mean_sq_trace
                    row["mean_abs_z_of_mean"] = bias_z
    return {
        "benchmark": "traces",
        "question": __doc__.splitlines()[0],
        "config": {
            "dims": dims,
            "batch": batch,
            "reps": reps,
            "variance_draws": draws,
            "hidden": list(hidden),
            "activation": "tanh",
            "seed": seed,
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "machine": platform.machine(),
            "processor": platform.processor(),
            "dtype": str(torch.get_default_dtype()),
        },
        "results": results,
    }


def _print_table(record: dict[str, Any]) -> None:
    rows = record["results"]
    header = ("dim", "mode", "estimator", "median ms", "variance", "E[tr^2]", "speedup")
    widths = (4, 8, 12, 10, 10, 9, 8)
    print(" ".join(f"{h:>{w}}" for h, w in zip(header, widths, strict=True)))
    for row in rows:
        speed = row.get("speedup_vs_exact_loop")
        speed_s = f"{speed:.2f}x" if speed is not None else ""
        cells = (
            f"{row['dim']:>4}",
            f"{row['mode']:>8}",
            f"{row['estimator']:>12}",
            f"{1e3 * row['median_s']:>10.3f}",
            f"{row['variance']:>10.3g}",
            f"{row['mean_squared_trace']:>9.3g}",
            f"{speed_s:>8}",
        )
        print(" ".join(cells))
    goal = [r for r in rows if r["estimator"] in ("exact", "analytic") and r["dim"] >= 32]
    for r in goal:
        met = r["speedup_vs_exact_loop"] >= 3.0
        print(
            f"{r['estimator']} >= 3x exact_loop at d={r['dim']} ({r['mode']}): "
            f"{r['speedup_vs_exact_loop']:.2f}x {'MET' if met else 'NOT MET'}"
        )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Parse arguments, run, print the table and write the JSON."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dims", type=int, nargs="+", default=[2, 8, 32, 64, 128])
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--reps", type=int, default=11, help="timed repetitions per config")
    parser.add_argument("--draws", type=int, default=64, help="probe draws for the variance")
    parser.add_argument("--hidden", type=int, nargs="+", default=[64, 64, 64])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="few reps, small dims: a smoke run")
    parser.add_argument("--out", type=Path, default=Path("bench-out"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.quick:
        args.dims, args.reps, args.draws, args.batch = [2, 8, 32], 3, 8, 128
    record = run(
        args.dims,
        args.batch,
        args.reps,
        args.draws,
        tuple(args.hidden),
        args.seed,
        registry=get_registry(),  # the script's entry point
    )
    record["config"]["quick"] = args.quick
    _print_table(record)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / ("traces-quick.json" if args.quick else "traces.json")
    path.write_text(json.dumps(record, indent=2))
    print(f"wrote {path}")
    return record


if __name__ == "__main__":
    main()
