"""Benchmark: which exact assignment solver should the minibatch-OT coupling use?

Question: for the ``ot`` coupling of :mod:`flowkit.matching.couplings` (an exact
assignment between two batches of equal size under the squared Euclidean cost),
how long does one coupling take with scipy's ``linear_sum_assignment``
(Jonker-Volgenant, the solver flowkit uses) and with POT's network simplex
``ot.emd`` (uniform weights; its plan is a permutation matrix up to ties), at
batches 64, 128, 256, 512 and 1024 in dimension ``d`` (default 2 and 32)? Both
solvers get the same float64 cost matrix, computed once outside the clock; the
cost of building it is timed separately, and each solver's total cost is checked
against scipy's (an exact solver must reach the same minimum).

Solvers are timed interleaved (each repetition runs every solver once, in a
rotating order) in one process with one thread; medians over repetitions are
reported with the ratio ``pot / scipy``. POT is optional: without it (``import
ot`` fails) only scipy is timed and the record says so; install it with
``pip install pot`` to compare.

Usage:
    python benchmarks/ot_coupling.py            # writes bench-out/ot_coupling.json
    python benchmarks/ot_coupling.py --quick    # a smoke run in a few seconds
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

__all__ = ["main", "run"]

Solver = Callable[[np.ndarray], np.ndarray]


def _scipy(cost: np.ndarray) -> np.ndarray:
    rows, cols = linear_sum_assignment(cost)
    perm = np.empty_like(cols)
    perm[rows] = cols
    return perm


def _pot_solver() -> Solver | None:
    try:
        import ot
    except ImportError:
        return None

    def solve(cost: np.ndarray) -> np.ndarray:
        n = cost.shape[0]
        weights = np.full(n, 1.0 / n)
        plan = ot.emd(weights, weights, cost, numItermax=10_000_000)
        return plan.argmax(axis=1)

    return solve


def run(
    batches: tuple[int, ...], dims: tuple[int, ...], repeats: int, seed: int = 0
) -> dict[str, Any]:
    """Time every available solver at every batch size and dimension; return the record."""
    torch.set_num_threads(1)
    solvers: dict[str, Solver] = {"scipy": _scipy}
    pot = _pot_solver()
    if pot is not None:
        solvers["pot"] = pot
    generator = torch.Generator().manual_seed(seed)
    results = []
    for dim in dims:
        for batch in batches:
            x0 = torch.randn(batch, dim, generator=generator, dtype=torch.float64)
            x1 = torch.randn(batch, dim, generator=generator, dtype=torch.float64) + 1.0
            times: dict[str, list[float]] = {name: [] for name in solvers}
            times["cost_matrix"] = []
            totals: dict[str, float] = {}
            names = list(solvers)
            for rep in range(repeats + 1):  # the first repetition warms up, untimed
                start = time.perf_counter()
                cost = torch.cdist(x0, x1).pow(2).numpy()
                elapsed = time.perf_counter() - start
                if rep:
                    times["cost_matrix"].append(elapsed)
                shift = rep % len(names)
                for name in names[shift:] + names[:shift]:
                    start = time.perf_counter()
                    perm = solvers[name](cost)
                    elapsed = time.perf_counter() - start
                    if rep:
                        times[name].append(elapsed)
                    totals[name] = float(cost[np.arange(batch), perm].sum())
            row: dict[str, Any] = {
                "dim": dim,
                "batch": batch,
                "median_s": {name: statistics.median(v) for name, v in times.items()},
                "total_cost": totals,
            }
            if "pot" in solvers:
                row["ratio_pot_over_scipy"] = row["median_s"]["pot"] / row["median_s"]["scipy"]
                row["same_minimum"] = bool(
                    abs(totals["pot"] - totals["scipy"]) <= 1e-9 * (1 + abs(totals["scipy"]))
                )
            results.append(row)
            print(json.dumps(row))
    return {
        "question": "exact minibatch OT assignment: scipy linear_sum_assignment vs POT ot.emd",
        "solvers": list(solvers),
        "pot_available": pot is not None,
        "repeats": repeats,
        "threads": torch.get_num_threads(),
        "machine": {
            "platform": platform.platform(),
            "machine": platform.machine(),
            "processor": platform.processor(),
            "python": platform.python_version(),
        },
        "results": results,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark from the command line and write its JSON record."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="a smoke run in a few seconds")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--out", type=Path, default=Path("bench-out"))
    args = parser.parse_args(argv)
    if args.quick:
        record = run(batches=(64, 128), dims=(2,), repeats=3)
    else:
        record = run(batches=(64, 128, 256, 512, 1024), dims=(2, 32), repeats=args.repeats)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / ("ot_coupling-quick.json" if args.quick else "ot_coupling.json")
    path.write_text(json.dumps(record, indent=2))
    print(f"wrote {path}")
    return record


if __name__ == "__main__":
    main()
