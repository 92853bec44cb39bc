"""Training objectives side by side: maximum likelihood, flow matching, a schedule, reflow.

Question: for one model (``flowkit train``'s recommended MLP field, end time 0.5),
which objective gives the best held-out density and samples for a given training
time on this machine? Contestants, trained interleaved in time slices in one
process, from the same initial weights on the same batches:

* ``maximum_likelihood``: ``flowkit train``'s recommended defaults (dopri5 at
  1e-3, analytic divergence, kinetic penalty 0.01, Adam 1e-2 with cosine decay
  over 1000 iterations), stepped through the ``maximum_likelihood`` objective.
* ``flow_matching`` and ``flow_matching_ot``: the ``flow_matching`` objective with
  independent and minibatch-OT couplings (Adam ``--fm-lr``, cosine decay over the
  time budget).
* ``fm_then_ml``: the schedule ``flow_matching`` (independent) for the first ``--switch``
  of the budget, then maximum likelihood (Adam ``--finetune-lr``, cosine decay
  over the rest).
* ``reflow``: ``flow_matching`` (independent) for the first ``--switch`` of the
  budget, then one reflow stage (``rectified_flow`` with the model at the
  switch as its frozen teacher, sampled by dopri5 at 1e-3).
* ``score_matching``: a score model (``objectives_contestants.SCORE_MODEL``: the
  ``probability_flow`` field of a noise-predicting MLP of the same size), trained
  by the ``score_matching`` objective; its NLL is the probability flow's, and it
  is also sampled by the reverse-time SDE and predictor-corrector
  (``objectives_samples.score_samplers``; 1000 reverse-SDE steps, 100 with ``--quick``).

Each objective is the registered plugin, used directly:
``registry.create("objective", name, **options).loss(model, batch, generator=g)``.

Figures, all off the training clock:

* held-out NLL (and bits/dim for digits) against training seconds, measured
  after every ``--chunk`` seconds by one evaluator for all (exact trace, dopri5
  at 1e-5: ``training_setups.Evaluator``, the one ``benchmarks/training.py``
  uses);
* sample quality at the end: the unbiased energy distance and the sliced W2
  (:mod:`flowkit.metrics`, in model space) between ``--n-samples`` model samples
  and held-out test data, for samples drawn with dopri5 at 1e-5 and 1e-3 and
  with 4 fixed Euler and midpoint steps, with each sampler's function
  evaluations; next to them the same figures between two held-out splits
  (validation vs test: the noise floor of the figure at that sample size).

Goals (issue "objectives"; 8gaussians, this 2-core machine): the best contestant
reaches test NLL 2.856 within 20 s of training; flow matching within 0.05 nats of
maximum likelihood at 60 s; on digits, flow matching's bits/dim at 120 s at most
maximum likelihood's, with samples closer to held-out data; after one reflow
stage, 4 Euler or midpoint steps sample within 10 % (sliced W2) of dopri5 at 1e-5;
class-conditional 8gaussians: conditional test NLL within 0.05 nats of the true
conditional density on the same points. Issue "SDEs" (8gaussians, 60 s): the score
model's probability-flow test NLL within 0.1 nats of maximum likelihood's, and its
reverse-SDE samples at least as close to held-out data (energy distance) as the
CNF's (``score_matching_goal`` in the JSON).

``--conditional`` measures that last goal instead: conditional CNFs (the same MLP
field built with ``context_dim=8``, the context the one-hot mixture component)
trained with ``maximum_likelihood`` and ``flow_matching`` (interleaved as above,
with each batch's labels as ``context=``), evaluated by the same referee with the
test points' labels as context, next to the true conditional density's NLL on the
same points (:mod:`objectives_conditional`). No sample figures in that mode.

The contestants are ``objectives_contestants.py``, a contestant in training
``objectives_runner.py``, the sample figures ``objectives_samples.py``, the two
measurements ``objectives_runs.py`` and the printed tables ``objectives_report.py``
(beside this script); this script is the command line.

Everything runs on one thread (``torch.set_num_threads(1)``). Results go to
``--out`` (default ``bench-out/objectives/objectives-<dataset>-<budget>s.json``);
an existing file is not overwritten without ``--overwrite``. A table is printed.

Usage:
    python benchmarks/objectives.py --help
    python benchmarks/objectives.py --quick
    python benchmarks/objectives.py --dataset 8gaussians --budget 20
    python benchmarks/objectives.py --dataset 8gaussians --conditional --budget 60
    python benchmarks/objectives.py --dataset digits --budget 120 \
        --contestants maximum_likelihood,flow_matching
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling modules below

from objectives_conditional import CONDITIONAL_DATASET
from objectives_contestants import CONDITIONAL_CONTESTANTS, CONTESTANTS
from objectives_report import print_conditional_table, print_table
from objectives_runs import run, run_conditional

__all__ = ["UsageError", "main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="A smoke run of a few seconds.")
    parser.add_argument("--dataset", default="8gaussians", help="A flowkit train data set.")
    parser.add_argument(
        "--conditional",
        action="store_true",
        help="The class-conditional 8gaussians goal (contestants: "
        f"{', '.join(CONDITIONAL_CONTESTANTS)}).",
    )
    parser.add_argument(
        "--contestants",
        default=None,
        help=f"Comma-separated, from: {', '.join(CONTESTANTS)} (default: all; "
        f"with --conditional: {', '.join(CONDITIONAL_CONTESTANTS)}).",
    )
    parser.add_argument("--budget", type=float, default=60.0, help="Training seconds each.")
    parser.add_argument("--chunk", type=float, default=5.0, help="Seconds between evaluations.")
    parser.add_argument("--n-test", type=int, default=5_000, help="Test points (toy data).")
    parser.add_argument("--n-samples", type=int, default=2_000, help="Samples for the figures.")
    parser.add_argument("--fm-lr", type=float, default=1e-2, help="Flow matching's peak Adam lr.")
    parser.add_argument(
        "--finetune-lr", type=float, default=3e-3, help="fm_then_ml: the likelihood phase's lr."
    )
    parser.add_argument(
        "--switch", type=float, default=0.5, help="fm_then_ml, reflow: first phase's share."
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="Output JSON file.")
    parser.add_argument("--overwrite", action="store_true", help="Replace an existing --out.")
    return parser


class UsageError(Exception):
    """A bad command-line choice; reported as one line, exit status 2."""


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv)
    except UsageError as exc:
        print(f"objectives.py: error: {exc}", file=sys.stderr)
        return 2


def _main(argv: list[str] | None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.quick:
        args.budget, args.chunk, args.n_test, args.n_samples = 1.0, 0.5, 300, 300
    allowed = CONDITIONAL_CONTESTANTS if args.conditional else CONTESTANTS
    chosen = ",".join(allowed) if args.contestants is None else args.contestants
    names = [c.strip() for c in chosen.split(",") if c.strip()]
    unknown = [c for c in names if c not in allowed]
    if unknown or not names:
        mode = " with --conditional" if args.conditional else ""
        raise UsageError(
            f"unknown contestant(s){mode} {', '.join(unknown) or '(none given)'}; "
            f"choose from: {', '.join(allowed)}."
        )
    if args.conditional and args.dataset != CONDITIONAL_DATASET:
        raise UsageError(
            f"--conditional measures class-conditional {CONDITIONAL_DATASET} (the one data set "
            f"with a known true conditional density), not {args.dataset!r}; pass "
            f"--dataset {CONDITIONAL_DATASET} or drop --conditional."
        )
    if args.budget <= 0 or args.chunk <= 0:
        raise UsageError("--budget and --chunk must be positive seconds.")
    if not 0.0 < args.switch < 1.0:
        raise UsageError(
            f"--switch must be between 0 and 1 (a share of the budget), got {args.switch}."
        )
    kind = "conditional-" if args.conditional else ""
    out = Path(
        args.out or f"bench-out/objectives/objectives-{kind}{args.dataset}-{args.budget:g}s.json"
    )
    if out.exists() and not args.overwrite:
        raise UsageError(f"{out} exists; pass --overwrite to replace it, or choose another --out.")
    torch.set_num_threads(1)
    print(
        f"objectives: {kind}{args.dataset}, {args.budget:g} s each, contestants {', '.join(names)}",
        flush=True,
    )
    if args.conditional:
        result = run_conditional(
            names,
            budget=args.budget,
            chunk=args.chunk,
            n_test=args.n_test,
            fm_lr=args.fm_lr,
            seed=args.seed,
        )
    else:
        result = _run_unconditional(args, names)
    report = {
        "torch": torch.__version__,
        "threads": 1,
        "quick": args.quick,
        "command": sys.argv if argv is None else ["benchmarks/objectives.py", *argv],
        **result,
    }
    (print_conditional_table if args.conditional else print_table)(result)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


def _run_unconditional(args: argparse.Namespace, names: list[str]) -> dict[str, Any]:
    return run(
        args.dataset,
        names,
        budget=args.budget,
        chunk=args.chunk,
        n_test=args.n_test,
        n_samples=args.n_samples,
        fm_lr=args.fm_lr,
        finetune_lr=args.finetune_lr,
        switch=args.switch,
        seed=args.seed,
        sde_steps=100 if args.quick else 1000,
    )


if __name__ == "__main__":
    sys.exit(main())
