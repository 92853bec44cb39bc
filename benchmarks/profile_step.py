"""Benchmark: where does the time of one CNF training step go, per phase?

Question: on the shipped trained toy field (``mlp`` 3 x 64, tanh; dopri5 at
rtol = atol = 1e-5, one thread), what share of one training step
(``-mean log p`` forward and backward) do field evaluations, trace work,
stage combinations, error norms and step control, the adjoint's augmented
dynamics, the backward pass through a recorded graph and the remaining Python
take, for each configuration of issue 16's table (trace ``exact`` or
``hutchinson`` x gradient ``backprop`` or ``adjoint``)? And how does the time
per function evaluation compare with a plain torchdiffeq CNF on the same work
(the ``torchdiffeq_plain`` peer of ``flowkit bench``, exact trace by a loop
over dimensions)?

Method: per-phase timers with exclusive accounting (a phase's time excludes
the phases nested in it), installed by wrapping the functions that do each
kind of work (see ``PHASES``). Every repetition runs every configuration
twice, interleaved: once bare (the time used for the ratios) and once with
the timers (the shares). Medians over repetitions are reported, with the
ratio flowkit / torchdiffeq of the time per evaluation (forward plus backward
evaluations) in the same run.

Usage:
    python benchmarks/profile_step.py         # d=2, batch 512; writes bench-out/profile_step.json
    python benchmarks/profile_step.py --settings 2:512 2:4096 8:512 --reps 5
    python benchmarks/profile_step.py --quick # a smoke run
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import statistics
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

import flowkit.adjoint as adjoint_module
import flowkit.rk.stepper as stepper_module
from flowkit.bench.assets import load_toy_field, toy_data
from flowkit.bench.peers.plain_dynamics import PlainAugmentedDynamics
from flowkit.bench.subjects import build_model
from flowkit.dynamics import CNFDynamics
from flowkit.registry import get_registry
from flowkit.rk.adaptive import AdaptiveRungeKutta
from flowkit.rk.problem import Problem

__all__ = ["PHASES", "PhaseTimer", "main", "run"]

TOL = 1e-5
PHASES = {
    "field": "field forward evaluations (the field's forward)",
    "trace": "trace work: vector-Jacobian products of the estimator (field excluded)",
    "dynamics": "CNF dynamics wrapper: output checks, sign, regularizer rates",
    "rhs": "solver's right-hand-side adapter (time tensor, evaluation count)",
    "combine": "stage combinations and error estimates (flowkit.rk.stepper)",
    "control": "error norms and step-size control",
    "augmented": "adjoint's augmented dynamics: VJP to state and parameters, pack/unpack",
    "backward": "autograd backward pass through the recorded graph",
    "other": "everything else: solver loop, solve path, checks, loss (Python and kernels)",
}
"""Phase name -> what it covers."""


class PhaseTimer:
    """Exclusive wall-clock time per phase; phases may nest."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = dict.fromkeys(PHASES, 0.0)
        self._stack: list[list[float]] = []

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Time the block as ``name``, less the time of phases nested inside it."""
        frame = [time.perf_counter(), 0.0]
        self._stack.append(frame)
        try:
            yield
        finally:
            elapsed = time.perf_counter() - frame[0]
            self._stack.pop()
            self.seconds[name] += elapsed - frame[1]
            if self._stack:
                self._stack[-1][1] += elapsed

    def wrap(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        """``fn`` timed as ``name``."""

        def timed(*args: Any, **kwargs: Any) -> Any:
            with self.phase(name):
                return fn(*args, **kwargs)

        return timed


@contextlib.contextmanager
def instrumented(timer: PhaseTimer, field: torch.nn.Module, model: Any) -> Iterator[None]:
    """Install the phase timers on flowkit's and the peer's code paths, then remove them."""
    saved: list[tuple[Any, str, bool, Any]] = []

    def patch(owner: Any, attr: str, phase: str) -> None:
        saved.append((owner, attr, attr in vars(owner), vars(owner).get(attr)))
        setattr(owner, attr, timer.wrap(phase, getattr(owner, attr)))

    patch(field, "forward", "field")
    trace = getattr(model, "trace", None)
    if trace is not None:
        patch(trace, "estimate", "trace")
    patch(PlainAugmentedDynamics, "velocity_and_divergence", "trace")
    patch(CNFDynamics, "forward", "dynamics")
    patch(Problem, "__call__", "rhs")
    patch(stepper_module, "_combine", "combine")
    patch(stepper_module, "_error", "combine")
    patch(AdaptiveRungeKutta, "_ratio", "control")
    original_vjp_field = adjoint_module._vjp_field

    def timed_vjp_field(*args: Any, **kwargs: Any) -> Any:
        return timer.wrap("augmented", original_vjp_field(*args, **kwargs))

    saved.append((adjoint_module, "_vjp_field", True, original_vjp_field))
    adjoint_module._vjp_field = timed_vjp_field  # type: ignore[assignment]
    try:
        yield
    finally:
        for owner, attr, had_own, value in reversed(saved):
            if had_own:
                setattr(owner, attr, value)
            else:
                delattr(owner, attr)  # the instance falls back to its class's method


def _step(model: Any, x: torch.Tensor, timer: PhaseTimer | None) -> tuple[float, int]:
    """One training step; returns (seconds, forward + backward evaluations)."""
    for p in model.module.parameters():
        p.grad = None
    before = 0 if model.is_flowkit else model.module.evaluations
    start = time.perf_counter()
    loss = -model.module.log_prob(x).mean()
    if timer is None:
        loss.backward()
    else:
        with timer.phase("backward"):
            loss.backward()
    seconds = time.perf_counter() - start
    if model.is_flowkit:
        stats = model.module.last_stats
        return seconds, int(stats.nfe + stats.backward_nfe)
    return seconds, int(model.module.evaluations - before)


def _configurations(dim: int, batch: int) -> list[dict[str, Any]]:
    out = []
    for trace in ("exact", "hutchinson"):
        for gradient in ("backprop", "adjoint"):
            for subject in ("flowkit", "torchdiffeq_plain"):
                peer_trace = "exact_loop" if subject != "flowkit" and trace == "exact" else trace
                out.append(
                    {
                        "subject": subject,
                        "trace": peer_trace,
                        "family": trace,
                        "gradient": gradient,
                        "dim": dim,
                        "batch": batch,
                    }
                )
    return out


def run(settings: list[tuple[int, int]], reps: int, seed: int) -> dict[str, Any]:
    """Profile every configuration at every (dim, batch); returns the JSON record."""
    registry = get_registry()
    rows: list[dict[str, Any]] = []
    for dim, batch in settings:
        field = load_toy_field(dim, registry=registry)
        x = toy_data(dim, batch, seed=seed)
        configs = _configurations(dim, batch)
        models = [
            build_model(
                c["subject"],
                field,
                dim=dim,
                integrator="dopri5",
                trace=c["trace"],
                gradient=c["gradient"],
                rtol=TOL,
                atol=TOL,
                steps=0,
                registry=registry,
            )
            for c in configs
        ]
        bare: list[list[float]] = [[] for _ in configs]
        nfes: list[list[int]] = [[] for _ in configs]
        shares: list[list[dict[str, float]]] = [[] for _ in configs]
        for model in models:  # warm-up
            torch.manual_seed(seed)
            _step(model, x, None)
        for r in range(reps):
            order = list(range(len(configs)))
            order = order[r % len(order) :] + order[: r % len(order)]
            for i in order:
                torch.manual_seed(seed + r)
                seconds, nfe = _step(models[i], x, None)
                bare[i].append(seconds)
                nfes[i].append(nfe)
                timer = PhaseTimer()
                torch.manual_seed(seed + r)
                with instrumented(timer, field, models[i].module):
                    total, _ = _step(models[i], x, timer)
                timer.seconds["other"] = total - sum(timer.seconds.values())
                shares[i].append({k: v / total for k, v in timer.seconds.items()})
        for i, c in enumerate(configs):
            med = statistics.median(bare[i])
            nfe = statistics.median(nfes[i])
            rows.append(
                {
                    **c,
                    "step_s": med,
                    "nfe_total": nfe,
                    "per_nfe_s": med / max(nfe, 1),
                    "times_s": bare[i],
                    "shares": {k: statistics.median(s[k] for s in shares[i]) for k in PHASES},
                }
            )
    _add_ratios(rows)
    return {
        "benchmark": "profile_step",
        "question": __doc__.splitlines()[0],
        "phases": PHASES,
        "config": {
            "settings": [list(s) for s in settings],
            "reps": reps,
            "seed": seed,
            "tolerance": TOL,
            "integrator": "dopri5",
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "machine": platform.machine(),
        },
        "results": rows,
    }


def _add_ratios(rows: list[dict[str, Any]]) -> None:
    """flowkit / torchdiffeq ratios of step time and of time per evaluation."""
    for row in rows:
        if row["subject"] != "flowkit":
            continue
        for peer in rows:
            same = all(peer[k] == row[k] for k in ("family", "gradient", "dim", "batch"))
            if same and peer["subject"] == "torchdiffeq_plain":
                row["step_ratio_vs_torchdiffeq"] = row["step_s"] / peer["step_s"]
                row["per_nfe_ratio_vs_torchdiffeq"] = row["per_nfe_s"] / peer["per_nfe_s"]


def _print_table(record: dict[str, Any]) -> None:
    short = list(PHASES)
    print(
        f"{'config':<44} {'ms':>7} {'nfe':>5} {'/nfe':>6} {'ratio':>6} "
        + " ".join(f"{p[:8]:>8}" for p in short)
    )
    for row in record["results"]:
        name = f"{row['subject']} {row['trace']}-{row['gradient']} d{row['dim']} b{row['batch']}"
        ratio = row.get("per_nfe_ratio_vs_torchdiffeq")
        cells = " ".join(f"{100 * row['shares'][p]:>7.1f}%" for p in short)
        print(
            f"{name:<44} {1e3 * row['step_s']:>7.1f} {row['nfe_total']:>5g} "
            f"{1e3 * row['per_nfe_s']:>6.3f} {'' if ratio is None else f'{ratio:.3f}':>6} {cells}"
        )


def _setting(text: str) -> tuple[int, int]:
    try:
        dim, batch = (int(v) for v in text.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected DIM:BATCH such as 2:512, got {text!r}"
        ) from None
    return dim, batch


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Parse arguments, run, print the table and write the JSON."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--settings", type=_setting, nargs="+", default=[(2, 512)])
    parser.add_argument("--reps", type=int, default=5, help="timed repetitions per config")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="batch 64, one repetition")
    parser.add_argument("--out", type=Path, default=Path("bench-out"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    settings = [(2, 64)] if args.quick else args.settings
    record = run(settings, 1 if args.quick else args.reps, args.seed)
    _print_table(record)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "profile_step.json"
    path.write_text(json.dumps(record, indent=1))
    print(f"wrote {path}")
    return record


if __name__ == "__main__":
    main()
