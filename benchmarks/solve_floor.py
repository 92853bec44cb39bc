"""Benchmark: how close to 1 can a Python Runge-Kutta loop bring time / (nfe x field eval)?

Question: issue 16's plain-solve goal asks ``time / (nfe x one field
evaluation)`` of at most 1.05 (dopri5 at rtol = atol = 1e-5, the shipped
trained toy field, d = 2, batch 512, one thread, no gradient). What does a
bare dopri5 loop reach on the same machine: the same method, Hairer's initial
step and torchdiffeq's integral controller (so the same evaluations as
flowkit), written with the fewest tensor operations per step and none of
flowkit's structure (no checks, no tuple states, no options)? That is the floor
any Python solver on this machine can approach.

Contestants, interleaved round by round in one process, each timed against a
field evaluation measured in the same round: ``flowkit.solve``; the
integrator's ``integrate`` alone (no solve path around it); the bare loop;
``torchdiffeq.odeint``. Medians are printed and written to
``bench-out/solve_floor.json``.

Usage:
    python benchmarks/solve_floor.py            # 30 rounds
    python benchmarks/solve_floor.py --reps 60
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

import torch
import torchdiffeq
from torch import Tensor

from flowkit.bench.assets import load_toy_field, toy_data
from flowkit.bench.timing import median_time
from flowkit.registry import get_registry
from flowkit.rk.methods import DOPRI5
from flowkit.solve import resolve_solver, solve

__all__ = ["bare_dopri5", "main"]

TOL = 1e-5


def bare_dopri5(
    field: Callable[[Tensor, Tensor], Tensor], y: Tensor, tol: float
) -> tuple[Tensor, int]:
    """Integrate ``dy/dt = field(t, y)`` from 0 to 1 with the fewest operations.

    Returns:
        ``y(1)`` and the number of field evaluations.
    """
    tab, n = DOPRI5, y.numel() ** 0.5
    k0 = field(torch.scalar_tensor(0.0), y)
    scale = y.abs().mul_(tol).add_(tol)
    d0 = float(torch.linalg.vector_norm(y / scale)) / n
    d1 = float(torch.linalg.vector_norm(k0 / scale)) / n
    h0 = 1e-6 if d0 < 1e-5 or d1 < 1e-5 else 0.01 * d0 / d1
    k1 = field(torch.scalar_tensor(h0), y + h0 * k0)
    d2 = float(torch.linalg.vector_norm((k1 - k0) / scale)) / n / h0
    h = min(100 * h0, (0.01 / max(d1, d2)) ** (1 / 5) if max(d1, d2) > 1e-15 else h0 * 1e-3)
    t, nfe = 0.0, 2
    while t < 1.0:
        h = min(h, 1.0 - t)
        ks = [k0]
        for i in range(1, tab.stages):
            (j, a), *rest = tab.stage_terms[i]
            yi = torch.add(y, ks[j], alpha=h * a)
            for j, a in rest:
                yi.add_(ks[j], alpha=h * a)
            ks.append(field(torch.scalar_tensor(t + tab.c[i] * h), yi))
        nfe += tab.stages - 1
        (j, e), *rest = tab.error_terms
        err = torch.mul(ks[j], h * e)
        for j, e in rest:
            err.add_(ks[j], alpha=h * e)
        scale = torch.maximum(y.abs(), yi.abs()).mul_(tol).add_(tol)
        ratio = float(torch.linalg.vector_norm(err.div_(scale))) / n
        if ratio <= 1.0:  # torchdiffeq's integral controller: no shrink after an accepted step
            y, k0, t = yi, ks[-1], t + h
            h *= 10.0 if ratio == 0 else min(10.0, max(1.0, 0.9 * ratio ** (-1 / 5)))
        else:
            h *= max(0.2, 0.9 * ratio ** (-1 / 5))
    return y, nfe


def run(reps: int) -> dict[str, Any]:
    """Median ``time / (nfe x field evaluation)`` of every contestant over ``reps`` rounds."""
    torch.set_num_threads(1)
    registry = get_registry()
    field = load_toy_field(2, registry=registry)
    x = toy_data(2, 512, seed=0)
    t, tt = torch.tensor([0.0, 1.0]), torch.tensor(0.5)
    opts = {"rtol": TOL, "atol": TOL}
    solver, _ = resolve_solver("dopri5", "backprop", integrator_options=opts, registry=registry)
    calls = [0]

    def counted(t_: Tensor, y: Tensor) -> Tensor:
        calls[0] += 1
        return field(t_, y)

    contestants: dict[str, Callable[[], int]] = {
        "flowkit.solve": lambda: (
            solve(
                field, x, t, integrator="dopri5", integrator_options=opts, registry=registry
            ).stats.nfe
        ),
        "integrate alone": lambda: solver.integrate(field, x, t).stats.nfe,
        "bare loop": lambda: bare_dopri5(field, x, TOL)[1],
        "torchdiffeq": lambda: (
            calls.__setitem__(0, 0),
            torchdiffeq.odeint(counted, x, t, rtol=TOL, atol=TOL, method="dopri5"),
            calls[0],
        )[-1],
    }
    ratios: dict[str, list[float]] = {name: [] for name in contestants}
    nfe: dict[str, int] = {}
    names = list(contestants)
    with torch.no_grad():
        for call in contestants.values():
            call()  # warm-up
        for r in range(reps):
            field_time = median_time(lambda: field(tt, x), x, repeats=20)
            for name in names[r % len(names) :] + names[: r % len(names)]:
                start = time.perf_counter()
                nfe[name] = contestants[name]()
                ratios[name].append((time.perf_counter() - start) / (nfe[name] * field_time))
    return {
        "median": {name: statistics.median(v) for name, v in ratios.items()},
        "nfe": nfe,
        "ratios": ratios,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Parse arguments, run, print the medians and write the JSON."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--reps", type=int, default=30, help="interleaved rounds")
    parser.add_argument("--out", type=Path, default=Path("bench-out"))
    args = parser.parse_args(argv)
    result = run(args.reps)
    for name, value in result["median"].items():
        print(f"{name:16s} time / (nfe x field eval) {value:.3f}  (nfe {result['nfe'][name]})")
    record = {
        "benchmark": "solve_floor",
        "question": __doc__.splitlines()[0],
        "config": {"reps": args.reps, "torch": torch.__version__, "machine": platform.machine()},
        **result,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "solve_floor.json"
    path.write_text(json.dumps(record, indent=2))
    print(f"wrote {path}")
    return record


if __name__ == "__main__":
    main()
