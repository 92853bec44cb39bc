"""Choosing the score model's defaults on the validation split (never the test split).

Question: which SDE, weighting, network and learning rate give a score model
(``probability_flow`` field, ``score_matching`` objective) the lowest
probability-flow NLL on 8gaussians' *validation* points for a fixed training
time? The candidates train interleaved in time slices in one process (the
loop of ``benchmarks/objectives.py``), from the same data and batches, each
with Adam and a cosine decay over its time budget; one evaluator (exact
trace, dopri5 at 1e-5) measures the validation NLL after every chunk. The
winner is :data:`objectives_contestants.SCORE_MODEL`, the model
``benchmarks/objectives.py`` and the ``training`` suite compare.

Results go to ``--out`` (default ``bench-out/objectives/score-tuning-<budget>s.json``;
an existing file is kept unless ``--overwrite``).

Usage:
    python benchmarks/score_matching_tuning.py --budget 30
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling modules below

from objectives_contestants import Phase
from objectives_runner import ObjectiveRunner
from training_setups import RECOMMENDED, Evaluator, make_trainer, train_interleaved

__all__ = ["CANDIDATES", "main"]


def _candidate(
    sde: str = "vp",
    sde_options: dict[str, Any] | None = None,
    weighting: dict[str, Any] | None = None,
    hidden: list[int] | None = None,
    activation: str = "tanh",
    lr: float = 3e-3,
) -> dict[str, Any]:
    return {
        "field_options": {
            "score_field_options": {"hidden": hidden or [64, 64, 64], "activation": activation},
            "sde": sde,
            "sde_options": sde_options or {},
            "parametrisation": "noise",
        },
        "objective_options": weighting or {},
        "lr": lr,
    }


LIKELIHOOD = {"weighting": "likelihood", "importance_sampling": True}
CANDIDATES: dict[str, dict[str, Any]] = {
    "vp": _candidate(),
    "vp_likelihood": _candidate(weighting=LIKELIHOOD),
    "subvp": _candidate(sde="subvp"),
    "ve": _candidate(sde="ve", sde_options={"sigma_max": 8.0}),
    "vp_lr1e-2": _candidate(lr=1e-2),
    "vp_silu_128": _candidate(hidden=[128, 128, 128], activation="silu"),
    # round 2, around the winner of round 1 (vp_lr1e-2; --budget 40)
    "vp_lr2e-2": _candidate(lr=2e-2),
    "vp_likelihood_lr1e-2": _candidate(weighting=LIKELIHOOD, lr=1e-2),
    "subvp_lr1e-2": _candidate(sde="subvp", lr=1e-2),
    "vp_beta10_lr1e-2": _candidate(sde_options={"beta_max": 10.0}, lr=1e-2),
}
"""The candidates, by name (noise parametrisation throughout)."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget", type=float, default=30.0, help="Training seconds each.")
    parser.add_argument("--chunk", type=float, default=10.0, help="Seconds between evaluations.")
    parser.add_argument("--candidates", default=",".join(CANDIDATES), help="Comma-separated.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None)
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    names = [n for n in args.candidates.split(",") if n]
    unknown = [n for n in names if n not in CANDIDATES]
    if unknown:
        print(f"score_matching_tuning.py: error: unknown candidate(s) {unknown}", file=sys.stderr)
        return 2
    out = Path(args.out or f"bench-out/objectives/score-tuning-{args.budget:g}s.json")
    if out.exists() and not args.overwrite:
        print(f"score_matching_tuning.py: error: {out} exists; pass --overwrite", file=sys.stderr)
        return 2
    torch.set_num_threads(1)
    runners = {}
    for name in names:
        c = CANDIDATES[name]
        values = {**RECOMMENDED, "field": "probability_flow", "trace": "exact"}
        values["field_options"] = c["field_options"]
        trainer = make_trainer(values, "8gaussians", 512, 5_000, args.seed)
        phase = Phase("score_matching", c["objective_options"], lr=c["lr"])
        runners[name] = ObjectiveRunner(trainer, [phase], args.budget, args.seed)
    data = next(iter(runners.values())).trainer.data
    evaluate = Evaluator(data.val, float(RECOMMENDED["t1"]))
    curves = train_interleaved("8gaussians(val)", runners, evaluate, args.budget, args.chunk)
    report = {
        "question": "validation NLL of score-model candidates (8gaussians)",
        "budget_s": args.budget,
        "candidates": {n: CANDIDATES[n] for n in names},
        "curves": curves,
        "final_val_nll": {k: c[-1][1] for k, c in curves.items()},
        "iterations": {k: r.iteration for k, r in runners.items()},
        "command": ["benchmarks/score_matching_tuning.py", *(argv or sys.argv[1:])],
    }
    for name, nll in sorted(report["final_val_nll"].items(), key=lambda kv: kv[1]):
        print(f"{name:>16}: val NLL {nll:.4f}")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
