"""What does each gradient strategy cost for one CNF training step?

Questions:

1. Peak memory of one training step (forward and backward) with 10, 100 and
   1000 fixed steps, per strategy. Goal: ``adjoint`` and ``reversible`` grow
   less than 10% from 10 to 1000 steps while ``backprop`` grows linearly.
2. Time per training step at ``dopri5`` with rtol = atol = 1e-5, per strategy.
3. flowkit's solver-agnostic ``adjoint`` against ``torchdiffeq_adjoint`` on the
   same problem, in one run, interleaved: time ratio (goal <= 1.1) and the
   gradient's error against a tight-tolerance float64 reference (goal: at least
   as accurate).

The problem: a CNF-sized field (MLP 2-64-64-64-2, tanh, time as an input) on a
batch of 512 points, integrating the augmented state ``(x, delta_logp)`` with
the exact trace (two vector-Jacobian products for d = 2) from t = 0 to 1; the
loss is the negative log-likelihood under a standard normal base. The field's
weights are drawn with a gain of 2, so that it is not nearly flat (a flat field
flatters every adaptive solver).

Memory is measured in a fresh process per configuration as the growth of the
resident set during the step: the kernel's peak-RSS counter (``VmHWM``) is
reset through ``/proc/self/clear_refs`` right before the step and read after
it, minus the RSS just before (torch's CPU tensors live in malloc'ed memory
that ``tracemalloc`` does not see). Where the reset is not permitted the
process-lifetime peak (``ru_maxrss``) is used and flagged in the JSON.
``reversible`` runs on ``torchsde.reversible_heun`` (the only reversible
integrator), ``torchdiffeq_adjoint`` on ``torchdiffeq.rk4``, the others on
flowkit's ``rk4``; for timing, ``reversible`` runs with a fixed step of 0.05
(it has no adaptive mode) and is reported apart from the dopri5 rows.

The problem is ``gradients_problem.py`` and the memory measurement
``gradients_memory.py`` (beside this script); the timing is here.

Run: ``python benchmarks/gradients.py`` (``--quick`` for a short run);
results go to ``bench-out/gradients.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from flowkit.bench.timing import stopwatch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling modules below

from gradients_memory import MEMORY_CONFIGS, memory_child, run_memory, summarize_memory
from gradients_problem import CNFDynamics, Field, flat_grad, problem_data, training_step

__all__ = ["Field", "main"]

# -- time and accuracy: interleaved in this process ----------------------------------
TOL = 1e-5


def timing_configs() -> dict[str, dict[str, Any]]:
    """Name -> (integrator, options, gradient, gradient options)."""
    dopri = {"rtol": TOL, "atol": TOL}
    return {
        "backprop/dopri5": {"integrator": "dopri5", "options": dopri, "gradient": "backprop"},
        "checkpoint/dopri5": {"integrator": "dopri5", "options": dopri, "gradient": "checkpoint"},
        "adjoint/dopri5": {"integrator": "dopri5", "options": dopri, "gradient": "adjoint"},
        "adjoint+seminorm/dopri5": {
            "integrator": "dopri5",
            "options": dopri,
            "gradient": "adjoint",
            "gradient_options": {"seminorm": True},
        },
        "adjoint/torchdiffeq.dopri5": {
            "integrator": "torchdiffeq.dopri5",
            "options": dopri,
            "gradient": "adjoint",
        },
        "torchdiffeq_adjoint/torchdiffeq.dopri5": {
            "integrator": "torchdiffeq.dopri5",
            "options": dopri,
            "gradient": "torchdiffeq_adjoint",
        },
        "reversible/torchsde.reversible_heun(step_size=0.05)": {
            "integrator": "torchsde.reversible_heun",
            "options": {"step_size": 0.05},
            "gradient": "reversible",
        },
    }


def reference_gradient(batch: int) -> Tensor:
    """Backprop through dopri5 at rtol = atol = 1e-10 in float64."""
    dynamics = CNFDynamics(Field()).double()
    x = problem_data(batch, torch.float64)
    training_step(dynamics, x, "dopri5", {"rtol": 1e-10, "atol": 1e-10}, "backprop")
    return flat_grad(dynamics)


def run_timing(reps: int, batch: int) -> dict[str, Any]:
    torch.set_num_threads(1)
    configs = timing_configs()
    ref = reference_gradient(batch)
    x = problem_data(batch, torch.float32)
    times: dict[str, list[float]] = {name: [] for name in configs}
    info: dict[str, dict[str, Any]] = {}
    rng = random.Random(0)
    order = list(configs)
    for rep in range(reps + 1):  # the first round is a warm-up and not recorded
        rng.shuffle(order)
        for name in order:
            cfg = configs[name]
            dynamics = CNFDynamics(Field())
            with stopwatch(x, dynamics) as clock:
                loss, stats = training_step(
                    dynamics,
                    x,
                    cfg["integrator"],
                    cfg["options"],
                    cfg["gradient"],
                    cfg.get("gradient_options"),
                )
            elapsed = clock.seconds
            if rep == 0:
                grad = flat_grad(dynamics)
                info[name] = {
                    "loss": loss,
                    "nfe": stats["nfe"],
                    "backward_nfe": stats["backward_nfe"],
                    "n_accepted": stats["n_accepted"],
                    "backward_n_accepted": stats["backward_n_accepted"],
                    "grad_rel_error": float((grad - ref).norm() / ref.norm()),
                }
            else:
                times[name].append(elapsed)
    rows = {}
    base = "torchdiffeq_adjoint/torchdiffeq.dopri5"
    base_median = statistics.median(times[base])
    for name in configs:
        med = statistics.median(times[name])
        rows[name] = {
            **info[name],
            "median_s": med,
            "times_s": times[name],
            "ratio_vs_torchdiffeq_adjoint": med / base_median,
        }
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10/100 steps, 3 repetitions")
    parser.add_argument("--reps", type=int, default=None, help="timing repetitions (default 7)")
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--steps", type=int, nargs="+", default=None, help="default 10 100 1000")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument(
        "--field",
        choices=("cnf", "plain"),
        default="cnf",
        help="memory runs: the CNF augmented dynamics (default) or the plain field",
    )
    parser.add_argument(
        "--gradients", nargs="+", default=None, help="memory runs: strategies (default: all)"
    )
    parser.add_argument("--name", default="gradients", help="JSON file name (without .json)")
    parser.add_argument("--skip-timing", action="store_true")
    parser.add_argument("--out", type=Path, default=Path("bench-out"))
    parser.add_argument(
        "--child-memory", nargs=2, metavar=("GRADIENT", "N_STEPS"), help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    if args.child_memory:
        gradient, n = args.child_memory
        print(json.dumps(memory_child(gradient, int(n), args.batch, args.field)))
        return 0
    steps = args.steps or ([10, 100] if args.quick else [10, 100, 1000])
    reps = args.reps or (3 if args.quick else 7)
    result: dict[str, Any] = {
        "question": __doc__.split("\n\n")[0],
        "batch": args.batch,
        "memory_field": args.field,
        "torch": torch.__version__,
        "threads": 1,
        "cpu_count": os.cpu_count(),
        "load_average": os.getloadavg(),
    }
    if not args.skip_memory:
        print(f"peak memory, field={args.field} (fresh process each):")
        gradients = args.gradients or list(MEMORY_CONFIGS)
        rows = run_memory(Path(__file__), steps, gradients, args.batch, args.field)
        result["memory"] = rows
        result["memory_growth"] = summarize_memory(rows, steps)
        for gradient, g in result["memory_growth"].items():
            print(
                f"  {gradient:>20}: {g['from_steps']} -> {g['to_steps']} steps: step delta "
                f"+{g['delta_from_mb']:.1f} -> +{g['delta_to_mb']:.1f} MB, process peak "
                f"x{g['peak_ratio']:.3f}"
            )
    if not args.skip_timing:
        print(f"time per training step, dopri5 rtol=atol={TOL} ({reps} repetitions, interleaved):")
        rows_t = run_timing(reps, args.batch)
        result["timing"] = rows_t
        for name, row in rows_t.items():
            ratio = row["ratio_vs_torchdiffeq_adjoint"]
            print(
                f"  {name:>45}: median {row['median_s']:.3f} s  x{ratio:.2f}"
                f"  nfe {row['nfe']}+{row['backward_nfe']}"
                f"  grad rel err {row['grad_rel_error']:.2e}"
            )
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"{args.name}.json"
    path.write_text(json.dumps(result, indent=2))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
