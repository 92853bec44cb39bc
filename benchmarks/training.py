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
import copy
import json
import math
import statistics
import tomllib
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from flowkit.bench.peers.torchdiffeq_plain import PlainCNF
from flowkit.bench.timing import stopwatch
from flowkit.cnf import CNF
from flowkit.data import BatchSampler
from flowkit.train import TrainConfig, Trainer

__all__ = ["bench_quality", "bench_speed", "main"]

FFJORD_TOY: dict[str, Any] = {
    "field": "concatsquash",
    "field_options": {"hidden": [64, 64, 64], "activation": "tanh"},
    "integrator": "dopri5",
    "integrator_options": {"rtol": 1e-5, "atol": 1e-5},
    "trace": "exact",
    "gradient": "adjoint",
    "t1": 0.5,
    "lr": 1e-3,
    "weight_decay": 1e-5,
}
"""FFJORD's toy-density configuration, in flowkit's configuration keys."""

_RECOMMENDED_KEYS = (
    "field",
    "field_options",
    "integrator",
    "integrator_options",
    "trace",
    "gradient",
    "t1",
    "regularizers",
    "lr",
    "weight_decay",
    "lr_schedule",
    "warmup",
    "iterations",
)
RECOMMENDED: dict[str, Any] = {k: getattr(TrainConfig(), k) for k in _RECOMMENDED_KEYS}
"""flowkit's recommended settings for the 2-D densities: ``flowkit train``'s defaults
(chosen with this benchmark). ``iterations`` only sets the span of the learning-rate
schedule here; training stops at the time budget."""

TARGET_8GAUSSIANS = 2.856


def _plain(field: nn.Module, *, dim: int, rtol: float = 1e-5, t1: float = 0.5) -> PlainCNF:
    """The plain FFJORD model (exact trace by a loop, ``odeint_adjoint``) on a copy of ``field``.

    The same implementation as ``flowkit bench``'s ``torchdiffeq_plain`` peer.
    """
    return PlainCNF(
        copy.deepcopy(field),
        dim=dim,
        method="dopri5",
        rtol=rtol,
        atol=rtol,
        trace="exact",
        adjoint=True,
        t0=0.0,
        t1=t1,
    )


class _PlainRunner:
    """The plain model with its optimiser and the same batches as the flowkit trainer."""

    def __init__(self, trainer: Trainer, batch_size: int, lr: float, wd: float) -> None:
        self.model = _plain(
            trainer.model.field, dim=trainer.data.train.shape[1], t1=trainer.config.t1
        )
        self.data = trainer.data
        self.sampler = BatchSampler(
            len(trainer.data.train), batch_size, seed=trainer.config.seed + 1
        )
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=lr, weight_decay=wd)
        self.train_seconds = 0.0
        self.iteration = 0
        self.nfe: list[int] = []

    @property
    def field(self) -> nn.Module:
        return self.model.field

    def step(self) -> None:
        before = self.model.evaluations
        with stopwatch(self.model) as clock:
            x = self.data.train[self.sampler.next_indices()]
            self.optimizer.zero_grad(set_to_none=True)
            loss = -self.model.log_prob(x).mean()
            loss.backward()
            self.optimizer.step()
        self.train_seconds += clock.seconds
        self.iteration += 1
        self.nfe.append(self.model.evaluations - before)


class _FlowkitRunner:
    def __init__(self, trainer: Trainer) -> None:
        self.trainer = trainer
        self.nfe: list[int] = []

    @property
    def field(self) -> nn.Module:
        return self.trainer.model.field

    @property
    def train_seconds(self) -> float:
        return self.trainer.train_seconds

    @property
    def iteration(self) -> int:
        return self.trainer.iteration

    def step(self) -> None:
        row = self.trainer.step()
        self.nfe.append(int(row["nfe"] or 0) + int(row["backward_nfe"] or 0))


class _Evaluator:
    """One evaluator for both models: exact trace, dopri5 at 1e-5, on a given field."""

    def __init__(self, test: Tensor, t1: float, chunk: int = 5_000) -> None:
        self.test, self.t1, self.chunk = test, t1, chunk

    @torch.no_grad()
    def __call__(self, field: nn.Module) -> float:
        model = CNF(
            field,
            "dopri5",
            "exact",
            "backprop",
            dim=self.test.shape[1],
            t1=self.t1,
            integrator_options={"rtol": 1e-5, "atol": 1e-5},
        )
        total = sum(float(-model.log_prob(c).double().sum()) for c in self.test.split(self.chunk))
        return total / len(self.test)


def _trainer(values: dict[str, Any], dataset: str, batch: int, n_test: int, seed: int) -> Trainer:
    config = TrainConfig(
        **{
            "iterations": 10**9,
            **values,
            "data": dataset,
            "batch_size": batch,
            "n_test": n_test,
            "progress": False,
            "plots": False,
            "seed": seed,
            "tensorboard": False,
        }
    )
    return Trainer(config, run_dir="bench-out/training/unused", write=False)


# -- question 1 ------------------------------------------------------------------------------
def bench_speed(rounds: int, block: int, seed: int) -> dict[str, Any]:
    """Iterations per second, FFJORD toy configuration, alternating blocks."""
    trainer = _trainer(FFJORD_TOY, "8gaussians", 100, 100, seed)
    runners = {
        "flowkit": _FlowkitRunner(trainer),
        "plain_torchdiffeq": _PlainRunner(trainer, 100, 1e-3, 1e-5),
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
    trainer = _trainer(recommended, dataset, 512, n_test, seed)
    plain_trainer = _trainer(FFJORD_TOY, dataset, 512, n_test, seed)
    runners = {
        "flowkit": _FlowkitRunner(trainer),
        "plain_torchdiffeq": _PlainRunner(plain_trainer, 512, 1e-3, 1e-5),
    }
    evaluate = _Evaluator(trainer.data.test, recommended["t1"])
    curves: dict[str, list[tuple[float, float]]] = {k: [] for k in runners}
    for name, runner in runners.items():
        curves[name].append((0.0, evaluate(runner.field)))
    while any(r.train_seconds < budget for r in runners.values()):
        name = min(runners, key=lambda k: runners[k].train_seconds)
        runner = runners[name]
        stop = min(budget, (math.floor(runner.train_seconds / chunk + 1e-9) + 1) * chunk)
        while runner.train_seconds < stop:
            runner.step()
        curves[name].append((runner.train_seconds, evaluate(runner.field)))
        print(
            f"  {dataset} {name}: {runner.train_seconds:6.1f} s, it {runner.iteration:5d}, "
            f"test NLL {curves[name][-1][1]:.4f}",
            flush=True,
        )
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
        result["true_density_nll_on_test"] = _true_8gaussians_nll(trainer.data.test)
    fields = {k: r.field for k, r in runners.items()}
    return result, fields


def _true_8gaussians_nll(x: Tensor) -> float:
    x = x.double()
    sigma = 0.5 / math.sqrt(2)
    ang = torch.arange(8, dtype=torch.float64) * math.pi / 4
    centres = (4 / math.sqrt(2)) * torch.stack([ang.cos(), ang.sin()], 1)
    sq = ((x[:, None, :] - centres[None]) ** 2).sum(-1)
    logp = torch.logsumexp(-sq / (2 * sigma**2), 1) - math.log(8 * 2 * math.pi * sigma**2)
    return float(-logp.mean())


# -- plots -----------------------------------------------------------------------------------
def _plot_curves(result: dict[str, Any], path: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.2, 3.0))
    ax = fig.subplots()
    for name, curve in result["curves"].items():
        ts, nll = zip(*curve, strict=True)
        ax.plot(ts, nll, marker="o", ms=2.5, label=name.replace("_", " "))
    if "target" in result:
        ax.axhline(result["target"], color="grey", ls="--", lw=0.8, label="target 2.856")
    finals = [c[-1][1] for c in result["curves"].values()]
    lo = min(finals)
    ax.set_ylim(lo - 0.05, lo + 1.0)
    ax.set_xlabel("training time (s, one thread)")
    ax.set_ylabel("test NLL (nats)")
    ax.set_title(result["dataset"])
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=80)


def _plot_density(field: nn.Module, data: Tensor, t1: float, path: Path, title: str) -> None:
    from flowkit.train.plots import plot_density_2d

    model = CNF(
        field,
        "dopri5",
        "exact",
        "backprop",
        dim=2,
        t1=t1,
        integrator_options={"rtol": 1e-5, "atol": 1e-5},
    )
    plot_density_2d(model, data, path, grid=80, title=title)


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
            data = _trainer(FFJORD_TOY, dataset, 512, args.n_test, args.seed).data.test
            for folder in targets:
                folder.mkdir(parents=True, exist_ok=True)
                _plot_curves(result, folder / f"training-nll-{dataset}.png")
                _plot_density(
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
