"""Benchmark: is ``exact`` ever slower than ``exact_loop``, and what do closed forms save?

Questions:

(a) ``exact`` against ``exact_loop`` on an ``mlp`` field (64-64-64, tanh) at
    d in {2, 8, 32, 64, 128} (``--dims``), batches 100 and 512, one and two
    threads, for a divergence under ``torch.no_grad()`` (sampling, evaluation)
    and with its second-order graph plus the backward pass (training): is
    ``exact``, which picks vectorised passes, chunks or the loop by
    ``plugins/exact_trace_plan.py``, at least as fast as the loop everywhere
    (ratio ``exact_loop / exact >= 1``)? With ``--sweep`` it also times one
    vectorised pass over all ``d`` basis vectors and passes of 1024, 2048 and
    4096 rows (basis vectors times batch): the measurements the rule was chosen
    from.
(b) FFJORD's toy configuration: ``concatsquash`` 64-64-64 (tanh), dopri5 at
    rtol = atol = 1e-5, batch 100 of ``pinwheel``, the field briefly trained
    first (an untrained field is nearly flat and needs few steps): how much
    faster is one training step (``-log_prob(x).mean()`` and its backward pass)
    with the closed-form ``analytic`` divergence than with ``exact``, with
    backprop and with the adjoint (goal: at least 2x), and do the two give the
    same parameter gradients in float64 (goal: within 1e-10, relative to the
    largest gradient entry)? How much of that does the fused pass
    (``plugins/vector_fields/affine_stack.py``) give, against the same closed
    form recorded by autograd (``fused_divergence = False``)? The same for
    ``hypernet`` (width 64, hypernetwork 32-32; no fused pass).
(c) At that size, how much of one evaluation with its backward pass is
    per-operation overhead (``benchmarks/divergence_costs.py``)?

Every configuration's contestants run in one process, interleaved (each
round times each once, in a rotating order, as a block of back-to-back calls
lasting about 50 ms, so that bursts of load from other processes hit them
alike); medians per call are reported with their ratios, and everything goes
to JSON.

Usage:
    python benchmarks/divergence.py                  # both parts, bench-out/divergence.json
    python benchmarks/divergence.py --part exact --sweep --dims 2 4 8 16 32 64 128
    python benchmarks/divergence.py --quick          # a smoke run in under a minute
"""

from __future__ import annotations

import argparse
import copy
import functools
import json
import math
import os
import platform
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from divergence_costs import evaluation_costs
from flowkit.plugins.trace_estimators import ExactTrace, ExactTraceLoop
from flowkit.plugins.vector_fields import MLPField
from torch import nn

from flowkit.bench.assets import toy_data
from flowkit.bench.timing import stopwatch
from flowkit.cnf import CNF

__all__ = ["exact_against_loop", "ffjord_training_step", "main"]

FIELDS: dict[str, dict[str, Any]] = {
    "concatsquash": {"hidden": (64, 64, 64), "activation": "tanh"},
    "hypernet": {"width": 64, "hyper_hidden": (32, 32), "activation": "tanh"},
}
"""The fields of part (b) and their options."""


def interleaved(
    calls: dict[str, Callable[[], None]], reps: int, *involved: Any, block_s: float = 0.05
) -> dict[str, Any]:
    """Median seconds per call of each of ``calls`` over ``reps`` rotating rounds.

    Each call is warmed up and then timed in blocks of ``n`` back-to-back
    calls, ``n`` chosen so that a block lasts about ``block_s`` (bursts of load
    from other processes then hit every contestant alike instead of a few whole
    timings); the per-call time of each block is recorded.
    """
    names = list(calls)
    repeat: dict[str, int] = {}
    for name in names:  # warm-up, and the fastest of three calls sizes the blocks
        fastest = math.inf
        for _ in range(3):
            with stopwatch(*involved) as clock:
                calls[name]()
            fastest = min(fastest, clock.seconds)
        repeat[name] = max(1, math.ceil(block_s / max(fastest, 1e-6)))
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(reps):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            with stopwatch(*involved) as clock:
                for _ in range(repeat[name]):
                    calls[name]()
            times[name].append(clock.seconds / repeat[name])
    return {
        "median_s": {n: statistics.median(v) for n, v in times.items()},
        "calls_per_timing": repeat,
        "times_s": times,
    }


def _contestants(batch: int, dim: int, sweep: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"exact_loop": ExactTraceLoop(), "exact": ExactTrace()}
    if sweep:
        out["vectorised"] = ExactTrace(method="vectorised")
        for rows in (1024, 2048, 4096):
            chunk = rows // batch
            if 1 <= chunk < dim:
                out[f"rows_{rows}"] = ExactTrace(chunk_size=chunk)
    return out


def _divergence_call(estimator: Any, field: nn.Module, t: Any, x: Any, mode: str) -> None:
    if mode == "no_grad":
        with torch.no_grad():
            estimator.estimate(field, t, x)
    else:
        field.zero_grad(set_to_none=True)
        estimator.estimate(field, t, x)[1].sum().backward()


def exact_against_loop(
    dims: list[int], batches: list[int], threads: list[int], reps: int, sweep: bool, seed: int
) -> list[dict[str, Any]]:
    """Part (a): one row per (threads, batch, dim, mode) with medians and ratios to the loop."""
    rows = []
    for n_threads in threads:
        torch.set_num_threads(n_threads)
        for batch in batches:
            for dim in dims:
                torch.manual_seed(seed)
                field = MLPField(dim=dim, hidden=(64, 64, 64))
                x, t = torch.randn(batch, dim), torch.tensor(0.5)
                contestants = _contestants(batch, dim, sweep)
                for mode in ("no_grad", "train"):
                    calls = {
                        n: functools.partial(_divergence_call, e, field, t, x, mode)
                        for n, e in contestants.items()
                    }
                    timed = interleaved(calls, reps, x)
                    med = timed["median_s"]
                    row = {
                        "threads": n_threads,
                        "batch": batch,
                        "dim": dim,
                        "mode": mode,
                        "exact_plan": contestants["exact"].plan(x),
                        **timed,
                        "loop_over": {n: med["exact_loop"] / m for n, m in med.items()},
                    }
                    rows.append(row)
                    ratios = " ".join(f"{n}={v:.2f}" for n, v in row["loop_over"].items())
                    print(
                        f"threads={n_threads} batch={batch} d={dim} {mode}: loop "
                        f"{1e3 * med['exact_loop']:.2f} ms; loop/x: {ratios}",
                        flush=True,
                    )
    return rows


def _trained_field(name: str, steps: int, seed: int) -> nn.Module:
    """``name`` briefly trained by maximum likelihood on pinwheel (analytic, loose dopri5)."""
    torch.manual_seed(seed)
    model = CNF(
        name,
        "dopri5",
        "analytic",
        "backprop",
        dim=2,
        field_options=FIELDS[name],
        integrator_options={"rtol": 1e-3, "atol": 1e-3},
    )
    optimiser = torch.optim.Adam(model.parameters(), lr=5e-3)
    for i in range(steps):
        optimiser.zero_grad()
        (-model.log_prob(toy_data(2, 100, seed=seed + i)).mean()).backward()
        optimiser.step()
    return model.field


TRACES: dict[str, tuple[str, dict[str, Any]]] = {
    "analytic": ("analytic", {}),
    "analytic_autograd": ("analytic", {}),
    "exact": ("exact", {}),
    "exact_vectorised": ("exact", {"method": "vectorised"}),
}
"""The contestants of part (b): ``analytic`` (the fused pass where the field has one),
the same closed form recorded by autograd (``fused_divergence = False``), ``exact`` as
it chooses (the loop at d = 2) and, for comparison with earlier figures, forced to one
vectorised pass."""


def _models(
    field: nn.Module, gradient: str, tol: float, traces: tuple[str, ...] = tuple(TRACES)
) -> dict[str, CNF]:
    unfused = copy.deepcopy(field)
    if hasattr(unfused, "fused_divergence"):
        unfused.fused_divergence = False
    return {
        label: CNF(
            unfused if label == "analytic_autograd" else field,
            "dopri5",
            TRACES[label][0],
            gradient,
            dim=2,
            integrator_options={"rtol": tol, "atol": tol},
            trace_options=TRACES[label][1],
        )
        for label in traces
    }


def _step(model: CNF, x: torch.Tensor, nfe: dict[str, int], label: str) -> None:
    """One training step's work: ``-log_prob(x).mean()`` and its backward pass."""
    model.zero_grad(set_to_none=True)
    (-model.log_prob(x).mean()).backward()
    nfe[label] = model.last_stats.nfe


def _gradient_agreement(field: nn.Module, gradient: str, tol: float, x: torch.Tensor) -> dict:
    """Parameter gradients of one step with ``analytic`` and ``exact`` in float64."""
    models = _models(copy.deepcopy(field).double(), gradient, tol, ("analytic", "exact"))
    x64 = x.double()
    grads, losses, nfe = {}, {}, {}
    for trace, model in models.items():
        loss = -model.log_prob(x64).mean()
        grads[trace] = torch.autograd.grad(loss, list(model.parameters()), allow_unused=True)
        losses[trace], nfe[trace] = float(loss.detach()), model.last_stats.nfe
    pairs = [
        (a, b) for a, b in zip(grads["analytic"], grads["exact"], strict=True) if b is not None
    ]
    scale = max(float(b.abs().max()) for _, b in pairs)
    diff = max(float((a - b).abs().max()) for a, b in pairs)
    return {
        "loss_analytic": losses["analytic"],
        "loss_exact": losses["exact"],
        "nfe_float64": nfe,
        "max_abs_gradient_difference": diff,
        "max_abs_gradient": scale,
        "relative_gradient_difference": diff / scale,
    }


def ffjord_training_step(
    fields: list[str], gradients: list[str], reps: int, train_steps: int, seed: int
) -> list[dict[str, Any]]:
    """Part (b): one row per (field, gradient) with time ratio and gradient agreement."""
    tol = 1e-5
    rows = []
    for name in fields:
        field = _trained_field(name, train_steps, seed)
        x = toy_data(2, 100, seed=seed + 10_000)
        for gradient in gradients:
            nfe: dict[str, int] = {}
            calls = {
                label: functools.partial(_step, model, x, nfe, label)
                for label, model in _models(field, gradient, tol).items()
            }
            timed = interleaved(calls, reps)
            med = timed["median_s"]
            row = {
                "field": name,
                "options": {
                    k: list(v) if isinstance(v, tuple) else v for k, v in FIELDS[name].items()
                },
                "gradient": gradient,
                "trained_steps": train_steps,
                **timed,
                "nfe_forward": nfe,
                "exact_over_analytic": med["exact"] / med["analytic"],
                "autograd_over_fused_analytic": med["analytic_autograd"] / med["analytic"],
                "exact_vectorised_over_analytic": med["exact_vectorised"] / med["analytic"],
                **_gradient_agreement(field, gradient, tol, x),
            }
            rows.append(row)
            speedup, agreement = row["exact_over_analytic"], row["relative_gradient_difference"]
            print(
                f"{name} {gradient}: analytic {1e3 * med['analytic']:.1f} ms, exact "
                f"{1e3 * med['exact']:.1f} ms, exact/analytic {speedup:.2f}x "
                f"(goal >= 2: {'MET' if speedup >= 2 else 'NOT MET'}; vectorised exact/analytic "
                f"{row['exact_vectorised_over_analytic']:.2f}x; the closed form by autograd "
                f"{row['autograd_over_fused_analytic']:.2f}x); float64 gradients differ by "
                f"{agreement:.1e} (goal <= 1e-10: {'MET' if agreement <= 1e-10 else 'NOT MET'})",
                flush=True,
            )
    return rows


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Parse arguments, run the chosen parts, print a summary and write the JSON."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--part", choices=("exact", "ffjord", "all"), default="all")
    parser.add_argument("--dims", type=int, nargs="+", default=[2, 8, 32, 64, 128])
    parser.add_argument("--batches", type=int, nargs="+", default=[100, 512])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--sweep", action="store_true", help="(a): time the rule's candidates too")
    parser.add_argument("--reps", type=int, default=7, help="timed rounds per configuration")
    parser.add_argument("--fields", nargs="+", default=list(FIELDS), choices=list(FIELDS))
    parser.add_argument("--gradients", nargs="+", default=["backprop", "adjoint"])
    parser.add_argument("--train-steps", type=int, default=40, help="(b): training before timing")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="a smoke run")
    parser.add_argument("--out", type=Path, default=Path("bench-out"))
    args = parser.parse_args(argv)
    if args.quick:
        args.dims, args.batches, args.threads, args.reps, args.train_steps = [2, 8], [64], [1], 2, 2
    threads_before = torch.get_num_threads()
    record: dict[str, Any] = {
        "benchmark": "divergence",
        "question": __doc__.splitlines()[0],
        "config": {
            **{k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "torch": torch.__version__,
            "machine": platform.machine(),
            "processor": platform.processor(),
            "cpu_count": os.cpu_count(),
        },
    }
    if args.part in ("exact", "all"):
        record["exact_against_loop"] = exact_against_loop(
            args.dims, args.batches, args.threads, args.reps, args.sweep, args.seed
        )
    torch.set_num_threads(threads_before)
    if args.part in ("ffjord", "all"):
        torch.set_num_threads(1)
        record["ffjord_training_step"] = ffjord_training_step(
            args.fields, args.gradients, args.reps, args.train_steps, args.seed
        )
        record["evaluation_costs"] = evaluation_costs(args.reps, args.seed, interleaved)
        torch.set_num_threads(threads_before)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = "divergence-quick" if args.quick else f"divergence-{args.part}"
    path = args.out / f"{stem}.json"
    path.write_text(json.dumps(record, indent=2))
    print(f"wrote {path}")
    return record


if __name__ == "__main__":
    main()
