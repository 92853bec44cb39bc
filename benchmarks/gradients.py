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

Run: ``python benchmarks/gradients.py`` (``--quick`` for a short run);
results go to ``bench-out/gradients.json``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import random
import resource
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from flowkit.bench.timing import stopwatch
from flowkit.distributions import standard_normal_log_prob
from flowkit.solve import solve

__all__ = ["Field", "main"]

DIM = 2
HIDDEN = 64


class Field(nn.Module):
    """MLP ``[x, t] -> 64 -> 64 -> 64 -> 2`` with tanh, weights with a gain of 2."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        sizes = [DIM + 1, HIDDEN, HIDDEN, HIDDEN, DIM]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(sizes))
        with torch.no_grad():
            for layer in self.layers:
                layer.weight.normal_(0.0, 2.0 / math.sqrt(layer.in_features), generator=gen)
                layer.bias.normal_(0.0, 0.5, generator=gen)

    def forward(self, t: Tensor, x: Tensor) -> Tensor:
        h = torch.cat([x, t.expand(x.shape[0], 1)], dim=1)
        for layer in self.layers[:-1]:
            h = torch.tanh(layer(h))
        return self.layers[-1](h)


class CNFDynamics(nn.Module):
    """``(x, delta_logp)' = (f, -tr(df/dx))`` with the exact trace."""

    def __init__(self, field: Field) -> None:
        super().__init__()
        self.field = field

    def forward(self, t: Tensor, state: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        x = state[0]
        keep = torch.is_grad_enabled()
        with torch.enable_grad():
            x_ = x if x.requires_grad else x.detach().requires_grad_(True)
            f = self.field(t, x_)
            div = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
            for i in range(DIM):
                (row,) = torch.autograd.grad(
                    f[:, i].sum(), x_, create_graph=keep, retain_graph=True
                )
                div = div + row[:, i]
        if not keep:
            return f.detach(), -div.detach()
        return f, -div


def _data(batch: int, dtype: torch.dtype) -> Tensor:
    gen = torch.Generator().manual_seed(1)
    angle = torch.rand(batch, generator=gen, dtype=torch.float64) * 2 * math.pi
    radius = 1.5 + 0.2 * torch.randn(batch, generator=gen, dtype=torch.float64)
    x = torch.stack([radius * angle.cos(), radius * angle.sin()], dim=1)
    return x.to(dtype)


def training_step(
    dynamics: nn.Module,
    x: Tensor,
    integrator: str,
    options: dict[str, Any],
    gradient: str,
    gradient_options: dict[str, Any] | None = None,
) -> tuple[float, dict[str, Any]]:
    """One forward and backward pass; returns the loss and the solve's statistics.

    With :class:`CNFDynamics` the loss is the negative log-likelihood; with a
    plain :class:`Field` it is the same base term without the trace.
    """
    dynamics.zero_grad(set_to_none=True)
    cnf = isinstance(dynamics, CNFDynamics)
    t = torch.tensor([0.0, 1.0], dtype=x.dtype)
    y0 = (x, torch.zeros(x.shape[0], dtype=x.dtype)) if cnf else x
    sol = solve(
        dynamics,
        y0,
        t,
        integrator=integrator,
        gradient=gradient,
        integrator_options=options,
        gradient_options=gradient_options,
    )
    x1, dlogp = sol.final if cnf else (sol.final, 0.0)  # type: ignore[misc]
    base = standard_normal_log_prob(x1)
    loss = -(base - dlogp).mean()
    loss.backward()
    return float(loss.detach()), sol.stats.as_dict()


def _flat_grad(module: nn.Module) -> Tensor:
    return torch.cat([p.grad.reshape(-1).double() for p in module.parameters()])


# -- memory: one configuration per process ------------------------------------------
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


def _memory_child(gradient: str, n_steps: int, batch: int, field: str) -> dict[str, Any]:
    torch.set_num_threads(1)
    integrator, step_option = MEMORY_CONFIGS[gradient]
    dynamics: nn.Module = CNFDynamics(Field()) if field == "cnf" else Field()
    x = _data(batch, torch.float32)
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
    steps: list[int], gradients: list[str], batch: int, field: str
) -> list[dict[str, Any]]:
    rows = []
    for n in steps:  # interleaved: every strategy at one step count, then the next
        for gradient in gradients:
            cmd = [sys.executable, __file__, "--child-memory", gradient, str(n)]
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
    x = _data(batch, torch.float64)
    training_step(dynamics, x, "dopri5", {"rtol": 1e-10, "atol": 1e-10}, "backprop")
    return _flat_grad(dynamics)


def run_timing(reps: int, batch: int) -> dict[str, Any]:
    torch.set_num_threads(1)
    configs = timing_configs()
    ref = reference_gradient(batch)
    x = _data(batch, torch.float32)
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
                grad = _flat_grad(dynamics)
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
        print(json.dumps(_memory_child(gradient, int(n), args.batch, args.field)))
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
        rows = run_memory(steps, gradients, args.batch, args.field)
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
