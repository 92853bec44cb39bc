"""Training CNFs with flowkit versus a plain torchdiffeq FFJORD implementation.

Questions:
    1. speed: on FFJORD's toy configuration (concatsquash 64-64-64, tanh,
       dopri5 at rtol = atol = 1e-5, exact trace, adjoint gradients, end time
       0.5, batch 100, Adam 1e-3 with weight decay 1e-5), does flowkit run at
       least as many iterations per second as a plain torchdiffeq
       implementation of the same model (``flowkit bench``'s ``torchdiffeq_plain``
       peer, ``flowkit.bench.peers.torchdiffeq_plain.PlainCNF``)? Both start
       from the same weights and see the same batches; blocks of iterations
       alternate between the two.
    2. quality: on 8gaussians (and moons, checkerboard, 2spirals), batch 512,
       how fast does held-out test NLL fall for flowkit's recommended
       settings (``flowkit train``'s defaults: MLP field with its analytic
       divergence, dopri5 at 1e-3, kinetic penalty, Adam 1e-2 with cosine
       decay over 1000 iterations) versus the plain FFJORD-style model
       (concatsquash, exact trace, dopri5 at 1e-5, adjoint, Adam 1e-3)?
       Goal: flowkit reaches 2.856 nats on 8gaussians within 90 s of
       training. The two train alternately in chunks of a few seconds in one
       process; after each chunk the test NLL of the
       model that just trained is measured by one shared evaluator (exact
       trace, dopri5 at 1e-5), off the clock.

The set-ups and the evaluator are ``training_setups.py``, the figures
``training_plots.py`` (beside this script); this script runs the two questions.

Everything runs on one thread (``torch.set_num_threads(1)``). Results go to
``bench-out/training/training.json``, NLL curves and density plots beside it
(and to ``--docs`` when given).

Usage:
    python benchmarks/training.py --help
    python benchmarks/training.py --quick
    python benchmarks/training.py --goals quality --datasets 8gaussians --budget 180
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tomllib
from pathlib import Path
from typing import Any

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling modules below

from training_plots import plot_curves, plot_density
from training_setups import (
    FFJORD_TOY,
    RECOMMENDED,
    TARGET_8GAUSSIANS,
    Evaluator,
    FlowkitRunner,
    PlainRunner,
    make_trainer,
    train_interleaved,
    true_8gaussians_nll,
)

__all__ = ["bench_quality", "bench_speed", "main"]


# -- question 1 ------------------------------------------------------------------------------
def bench_speed(rounds: int, block: int, seed: int) -> dict[str, Any]:
    """Iterations per second, FFJORD toy configuration, alternating blocks."""
    trainer = make_trainer(FFJORD_TOY, "8gaussians", 100, 100, seed)
    runners = {
        "flowkit": FlowkitRunner(trainer),
        "plain_torchdiffeq": PlainRunner(trainer, 100, 1e-3, 1e-5),
    }
    rates: dict[str, list[float]] = {k: [] for k in runners}
    for runner in runners.values():  # warm-up, off the record
        runner.step()
    for r in range(rounds):
        order = list(runners) if r % 2 == 0 else list(reversed(runners))
        for name in order:
            runner = runners[name]
            before = runner.train_seconds
            for _ in range(block):
                runner.step()
            rates[name].append(block / (runner.train_seconds - before))
        print(
            f"  round {r + 1}/{rounds}: "
            + ", ".join(f"{k} {v[-1]:.2f} it/s" for k, v in rates.items()),
            flush=True,
        )
    med = {k: statistics.median(v) for k, v in rates.items()}
    per_round = [f / p for f, p in zip(rates["flowkit"], rates["plain_torchdiffeq"], strict=True)]
    return {
        "config": FFJORD_TOY | {"batch_size": 100},
        "rounds": rounds,
        "block": block,
        "it_per_s": rates,
        "median_it_per_s": med,
        "ratio_flowkit_over_plain": med["flowkit"] / med["plain_torchdiffeq"],
        "round_ratios_flowkit_over_plain": per_round,
        "median_round_ratio_flowkit_over_plain": statistics.median(per_round),
        "median_nfe_per_iteration": {k: statistics.median(r.nfe) for k, r in runners.items()},
    }


# -- question 2 ------------------------------------------------------------------------------
def _first_time(curve: list[tuple[float, float]], target: float) -> float | None:
    return next((t for t, nll in curve if nll <= target), None)


def _at(curve: list[tuple[float, float]], seconds: float) -> float | None:
    """The NLL of the last evaluation at ``seconds`` of training (a last step may overrun 2 %)."""
    before = [nll for t, nll in curve if t <= 1.02 * seconds]
    return before[-1] if before else None


def bench_quality(
    dataset: str,
    recommended: dict[str, Any],
    *,
    budget: float,
    chunk: float,
    n_test: int,
    seed: int,
) -> tuple[dict[str, Any], dict[str, nn.Module]]:
    """NLL-versus-time curves of flowkit (recommended) and the plain model, interleaved."""
    trainer = make_trainer(recommended, dataset, 512, n_test, seed)
    plain_trainer = make_trainer(FFJORD_TOY, dataset, 512, n_test, seed)
    runners = {
        "flowkit": FlowkitRunner(trainer),
        "plain_torchdiffeq": PlainRunner(plain_trainer, 512, 1e-3, 1e-5),
    }
    evaluate = Evaluator(trainer.data.test, recommended["t1"])
    curves = train_interleaved(dataset, runners, evaluate, budget, chunk)
    plain_final = curves["plain_torchdiffeq"][-1][1]
    result: dict[str, Any] = {
        "dataset": dataset,
        "budget_s": budget,
        "chunk_s": chunk,
        "n_test": n_test,
        "recommended": recommended,
        "curves": curves,
        "iterations": {k: r.iteration for k, r in runners.items()},
        "median_nfe_per_iteration": {k: statistics.median(r.nfe) for k, r in runners.items()},
        "nll_at": {
            k: {str(s): _at(c, s) for s in (30, 60, 90, 120, 180) if s <= budget}
            for k, c in curves.items()
        },
        "flowkit_seconds_to_plain_final_nll": _first_time(curves["flowkit"], plain_final),
    }
    if dataset == "8gaussians":
        result["target"] = TARGET_8GAUSSIANS
        result["seconds_to_target"] = {
            k: _first_time(c, TARGET_8GAUSSIANS) for k, c in curves.items()
        }
        result["true_density_nll_on_test"] = true_8gaussians_nll(trainer.data.test)
    fields = {k: r.field for k, r in runners.items()}
    return result, fields


def _parse_overrides(items: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, _, raw = item.partition("=")
        out[key.strip()] = tomllib.loads(f"v = {raw}")["v"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="A short smoke run (about 2 min).")
    parser.add_argument("--goals", default="speed,quality", help="speed, quality or both.")
    parser.add_argument("--datasets", default="8gaussians,moons,checkerboard,2spirals")
    parser.add_argument("--budget", type=float, default=180.0, help="Training seconds each.")
    parser.add_argument("--chunk", type=float, default=10.0, help="Seconds between evaluations.")
    parser.add_argument("--n-test", type=int, default=5_000, help="Test points.")
    parser.add_argument("--rounds", type=int, default=8, help="Speed: alternating rounds.")
    parser.add_argument("--block", type=int, default=5, help="Speed: iterations per block.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="Override a recommended flowkit setting (TOML value).",
    )
    parser.add_argument("--out", default="bench-out/training", help="Output directory.")
    parser.add_argument("--docs", default=None, help="Also write the PNGs to this directory.")
    args = parser.parse_args()
    if args.quick:
        args.budget, args.chunk, args.n_test, args.rounds, args.block = 20.0, 5.0, 1000, 2, 2
        args.datasets = "8gaussians"
    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    recommended = {**RECOMMENDED, **_parse_overrides(args.set)}
    goals = {g.strip() for g in args.goals.split(",")}
    report: dict[str, Any] = {"torch": torch.__version__, "threads": 1, "quick": args.quick}
    if "speed" in goals:
        print("speed: FFJORD toy configuration, batch 100", flush=True)
        report["speed"] = bench_speed(args.rounds, args.block, args.seed)
        s = report["speed"]
        print(
            f"  median it/s: flowkit {s['median_it_per_s']['flowkit']:.2f}, plain "
            f"{s['median_it_per_s']['plain_torchdiffeq']:.2f}, ratio "
            f"{s['ratio_flowkit_over_plain']:.3f}; per round (same load on both): median "
            f"{s['median_round_ratio_flowkit_over_plain']:.3f}, range "
            f"{min(s['round_ratios_flowkit_over_plain']):.2f}-"
            f"{max(s['round_ratios_flowkit_over_plain']):.2f}",
            flush=True,
        )
    if "quality" in goals:
        report["quality"] = []
        for dataset in [d.strip() for d in args.datasets.split(",") if d.strip()]:
            print(f"quality: {dataset}, batch 512, budget {args.budget:.0f} s", flush=True)
            result, fields = bench_quality(
                dataset,
                recommended,
                budget=args.budget,
                chunk=args.chunk,
                n_test=args.n_test,
                seed=args.seed,
            )
            report["quality"].append(result)
            targets = [out] + ([Path(args.docs)] if args.docs else [])
            data = make_trainer(FFJORD_TOY, dataset, 512, args.n_test, args.seed).data.test
            for folder in targets:
                folder.mkdir(parents=True, exist_ok=True)
                plot_curves(result, folder / f"training-nll-{dataset}.png")
                plot_density(
                    fields["flowkit"],
                    data,
                    recommended["t1"],
                    folder / f"training-density-{dataset}.png",
                    f"{dataset}: flowkit, {args.budget:.0f} s",
                )
            print(f"  NLL at: {json.dumps(result['nll_at'])}", flush=True)
            if "seconds_to_target" in result:
                print(
                    f"  seconds to {TARGET_8GAUSSIANS}: {result['seconds_to_target']}", flush=True
                )
    path = out / "training.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
