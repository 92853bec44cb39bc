"""Question 1 of ``benchmarks/gradients.py``: peak memory of one training step, per strategy.

Each configuration runs in a fresh process (the script called with
``--child-memory``); see the script's docstring for how the peak is measured.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch
from gradients_problem import CNFDynamics, Field, problem_data, training_step
from torch import nn

from flowkit.bench.timing import stopwatch

__all__ = ["MEMORY_CONFIGS", "memory_child", "run_memory", "summarize_memory"]


MEMORY_CONFIGS: dict[str, tuple[str, str]] = {
    "backprop": ("rk4", "step_size"),
    "checkpoint": ("rk4", "step_size"),
    "adjoint": ("rk4", "step_size"),
    "reversible": ("torchsde.reversible_heun", "step_size"),
    "torchdiffeq_adjoint": ("torchdiffeq.rk4", "step_size"),
}


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def memory_child(gradient: str, n_steps: int, batch: int, field: str) -> dict[str, Any]:
    """One measured training step in this (fresh) process: its peak resident-set growth."""
    torch.set_num_threads(1)
    integrator, step_option = MEMORY_CONFIGS[gradient]
    dynamics: nn.Module = CNFDynamics(Field()) if field == "cnf" else Field()
    x = problem_data(batch, torch.float32)
    training_step(dynamics, x, integrator, {step_option: 1.0 / 10}, gradient)  # warm-up
    before = _status_kb("VmRSS")
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        method = "VmHWM reset"
    except OSError:
        method = "ru_maxrss (lifetime peak)"
    with stopwatch(x, dynamics) as clock:
        _, stats = training_step(dynamics, x, integrator, {step_option: 1.0 / n_steps}, gradient)
    elapsed = clock.seconds
    peak = _status_kb("VmHWM") if method == "VmHWM reset" else _ru_maxrss_kb()
    return {
        "gradient": gradient,
        "field": field,
        "integrator": integrator,
        "n_steps": n_steps,
        "peak_delta_mb": (peak - before) / 1024,
        "rss_before_mb": before / 1024,
        "method": method,
        "seconds": elapsed,
        "nfe": stats["nfe"],
        "backward_nfe": stats["backward_nfe"],
    }


def _ru_maxrss_kb() -> int:
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def run_memory(
    script: Path, steps: list[int], gradients: list[str], batch: int, field: str
) -> list[dict[str, Any]]:
    """Each strategy at each step count, each in a fresh process of ``script --child-memory``."""
    rows = []
    for n in steps:  # interleaved: every strategy at one step count, then the next
        for gradient in gradients:
            cmd = [sys.executable, str(script), "--child-memory", gradient, str(n)]
            cmd += ["--batch", str(batch), "--field", field]
            out = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if out.returncode != 0:
                rows.append({"gradient": gradient, "n_steps": n, "error": out.stderr[-2000:]})
                print(f"  {gradient:>20} {n:>5} steps: FAILED\n{out.stderr[-2000:]}")
                continue
            row = json.loads(out.stdout.strip().splitlines()[-1])
            rows.append(row)
            print(
                f"  {gradient:>20} {n:>5} steps: peak +{row['peak_delta_mb']:8.1f} MB "
                f"({row['seconds']:.2f} s, nfe {row['nfe']}+{row['backward_nfe']})"
            )
    return rows


def summarize_memory(rows: list[dict[str, Any]], steps: list[int]) -> dict[str, Any]:
    """Growth from the fewest to the most steps, per strategy.

    The step's own delta is near zero for constant-memory strategies, so a
    ratio of deltas is noise; the goal is read on the process peak (resident
    set before the step plus the step's delta), next to the deltas in MB.
    """
    lo, hi = min(steps), max(steps)
    out: dict[str, Any] = {}
    for gradient in dict.fromkeys(r["gradient"] for r in rows):
        by_n = {r["n_steps"]: r for r in rows if r["gradient"] == gradient and "peak_delta_mb" in r}
        if lo in by_n and hi in by_n:
            first, last = by_n[lo], by_n[hi]
            peak_lo = first["rss_before_mb"] + first["peak_delta_mb"]
            peak_hi = last["rss_before_mb"] + last["peak_delta_mb"]
            out[gradient] = {
                "from_steps": lo,
                "to_steps": hi,
                "delta_from_mb": first["peak_delta_mb"],
                "delta_to_mb": last["peak_delta_mb"],
                "peak_ratio": peak_hi / peak_lo,
            }
    return out
