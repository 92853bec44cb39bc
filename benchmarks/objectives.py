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
conditional density on the same points.

``--conditional`` measures that last goal instead: conditional CNFs (the same MLP
field built with ``context_dim=8``, the context the one-hot mixture component)
trained with ``maximum_likelihood`` and ``flow_matching`` (interleaved as above,
with each batch's labels as ``context=``), evaluated by the same referee with the
test points' labels as context, next to the true conditional density's NLL on the
same points (:mod:`objectives_conditional`). No sample figures in that mode.

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
import math
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling modules below

from objectives_conditional import (
    CONDITIONAL_DATASET,
    GOAL_GAP_NATS,
    ConditionalBatches,
    ConditionalEvaluator,
    labelled_splits,
    true_conditional_8gaussians_nll,
)
from training_setups import (
    RECOMMENDED,
    TARGET_8GAUSSIANS,
    Evaluator,
    make_trainer,
    true_8gaussians_nll,
)

from flowkit.cnf import CNF
from flowkit.metrics import energy_distance, sliced_wasserstein
from flowkit.registry import get_registry
from flowkit.train import Trainer

__all__ = [
    "CONDITIONAL_CONTESTANTS",
    "CONTESTANTS",
    "ObjectiveRunner",
    "Phase",
    "UsageError",
    "main",
    "print_conditional_table",
    "print_table",
    "run",
    "run_conditional",
    "sample_quality",
]


@dataclass(frozen=True)
class Phase:
    """One stretch of a contestant's training.

    Attributes:
        objective: the registered objective's name.
        options: its options (``teacher`` is added for a reflow stage).
        until: the fraction of the time budget at which the phase ends.
        lr: Adam's peak learning rate with cosine decay over the phase's seconds,
            or ``None`` for the trainer's recommended optimiser and schedule.
        teacher: pass the model at the phase start as ``teacher=`` (reflow).
    """

    objective: str
    options: dict[str, Any] = field(default_factory=dict)
    until: float = 1.0
    lr: float | None = None
    teacher: bool = False


def contestants(fm_lr: float, finetune_lr: float, switch: float) -> dict[str, list[Phase]]:
    """The compared objectives and schedules, by name."""
    ml = Phase("maximum_likelihood", {"regularizers": dict(RECOMMENDED["regularizers"])})
    return {
        "maximum_likelihood": [ml],
        "flow_matching": [Phase("flow_matching", {"coupling": "independent"}, lr=fm_lr)],
        "flow_matching_ot": [Phase("flow_matching", {"coupling": "ot"}, lr=fm_lr)],
        "fm_then_ml": [
            Phase("flow_matching", {"coupling": "independent"}, until=switch, lr=fm_lr),
            Phase(ml.objective, ml.options, lr=finetune_lr),
        ],
        "reflow": [
            Phase("flow_matching", {"coupling": "independent"}, until=switch, lr=fm_lr),
            Phase("rectified_flow", lr=fm_lr, teacher=True),
        ],
    }


CONTESTANTS = tuple(contestants(1e-2, 3e-3, 0.5))
"""The contestants' names, in the order they are reported."""

CONDITIONAL_CONTESTANTS = ("maximum_likelihood", "flow_matching")
"""The contestants of ``--conditional`` (the objectives the goal names)."""


class ObjectiveRunner:
    """One contestant: a trainer's data, model and batches, stepped through objective plugins.

    Keeps its own training clock (batch, loss, backward, optimiser step; no evaluation).
    ``batches``, when given, returns each batch with its context (a conditional model);
    by default the trainer's batches are used without context.
    """

    def __init__(
        self,
        trainer: Trainer,
        phases: list[Phase],
        budget: float,
        seed: int,
        batches: Callable[[], tuple[Tensor, Tensor | None]] | None = None,
    ) -> None:
        self.trainer = trainer
        self.batches = batches or (lambda: (trainer.next_batch(), None))
        self.model: CNF = trainer.model
        self.phases = phases
        self.budget = budget
        self.generator = torch.Generator().manual_seed(seed + 5)
        self.train_seconds = 0.0
        self.iteration = 0
        self.nfe: list[int] = []
        self.phase_index = -1
        self._enter_next_phase()

    @property
    def field(self) -> nn.Module:
        return self.model.field

    def _enter_next_phase(self) -> None:
        self.phase_index += 1
        phase = self.phases[self.phase_index]
        options = dict(phase.options)
        if phase.teacher:
            options["teacher"] = self.model
        self.objective = get_registry().create("objective", phase.objective, **options)
        self.phase_start = self.train_seconds
        self.phase_end = phase.until * self.budget
        if phase.lr is None:
            self.optimizer = self.trainer.optimizer
            self.scheduler: Any = self.trainer.scheduler
        else:
            self.optimizer = torch.optim.Adam(
                self.model.parameters(), lr=phase.lr, weight_decay=self.trainer.config.weight_decay
            )
            self.scheduler = None

    def _set_time_cosine_lr(self) -> None:
        peak = self.phases[self.phase_index].lr
        assert peak is not None
        span = max(self.phase_end - self.phase_start, 1e-9)
        progress = min(1.0, (self.train_seconds - self.phase_start) / span)
        for group in self.optimizer.param_groups:
            group["lr"] = peak * 0.5 * (1.0 + math.cos(math.pi * progress))

    def _step_nfe(self) -> int:
        teacher = getattr(self.objective, "teacher", None)
        if isinstance(teacher, CNF):
            stats = teacher.last_stats
            return 1 + (stats.nfe if stats is not None else 0)
        if self.objective.simulation_free:
            return 1
        stats = self.model.last_stats
        return 0 if stats is None else stats.nfe + (stats.backward_nfe or 0)

    def step(self) -> None:
        """One optimisation step of the current phase (moving on when its time is up)."""
        if self.train_seconds >= self.phase_end and self.phase_index + 1 < len(self.phases):
            self._enter_next_phase()
        start = time.perf_counter()
        self.model.train()
        batch, context = self.batches()
        if self.scheduler is None:
            self._set_time_cosine_lr()
        self.optimizer.zero_grad(set_to_none=True)
        result = self.objective.loss(self.model, batch, context=context, generator=self.generator)
        if not bool(torch.isfinite(result.loss)):
            raise RuntimeError(
                f"{self.phases[self.phase_index].objective}: the loss became "
                f"{float(result.loss)} at iteration {self.iteration}; lower the learning rate."
            )
        result.loss.backward()
        self.optimizer.step()
        if self.scheduler is not None:
            self.scheduler.step()
        self.train_seconds += time.perf_counter() - start
        self.iteration += 1
        self.nfe.append(self._step_nfe())


SAMPLERS: dict[str, tuple[str, dict[str, Any]]] = {
    "dopri5_1e-5": ("dopri5", {"rtol": 1e-5, "atol": 1e-5}),
    "dopri5_1e-3": ("dopri5", {"rtol": 1e-3, "atol": 1e-3}),
    "euler_4": ("euler", {"n_steps": 4}),
    "midpoint_4": ("midpoint", {"n_steps": 4}),
}
"""The integrators samples are drawn with, by name."""


def _distances(x: Tensor, reference: Tensor, seed: int) -> dict[str, float]:
    x, reference = x.double(), reference.double()
    return {
        "energy_distance": float(energy_distance(x, reference, unbiased=True)),
        "sliced_w2": float(
            sliced_wasserstein(x, reference, 256, torch.Generator().manual_seed(seed))
        ),
    }


@torch.no_grad()
def sample_quality(
    field_: nn.Module, reference: Tensor, *, t1: float, n: int, seed: int
) -> dict[str, dict[str, float]]:
    """Distances between ``n`` samples of the flow of ``field_`` and ``reference``, per sampler.

    The same noise (``seed``) for every sampler and model; each entry also has the
    sampler's function evaluations (``nfe``).
    """
    dim = reference.shape[1]
    z = torch.randn(
        n, dim, generator=torch.Generator().manual_seed(seed), dtype=reference.dtype
    ).to(reference.device)
    out: dict[str, dict[str, float]] = {}
    for name, (integrator, options) in SAMPLERS.items():
        model = CNF(
            field_, integrator, "exact", "backprop", dim=dim, t1=t1, integrator_options=options
        )
        x = model.transform(z)
        stats = model.last_stats
        out[name] = {**_distances(x, reference, seed + 1), "nfe": stats.nfe if stats else None}
    return out


def _first_time(curve: list[tuple[float, float]], target: float) -> float | None:
    return next((t for t, nll in curve if nll <= target), None)


def _at(curve: list[tuple[float, float]], seconds: float) -> float | None:
    """The NLL of the last evaluation at ``seconds`` of training (a last step may overrun 2 %)."""
    before = [nll for t, nll in curve if t <= 1.02 * seconds]
    return before[-1] if before else None


def _train_interleaved(
    dataset: str,
    runners: dict[str, ObjectiveRunner],
    evaluate: Callable[[nn.Module], float],
    budget: float,
    chunk: float,
) -> dict[str, list[tuple[float, float]]]:
    """Step the runners in turn, ``chunk`` training seconds at a time; their NLL curves."""
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
            f"  {dataset} {name}: {runner.train_seconds:6.1f} s, it {runner.iteration:6d}, "
            f"test NLL {curves[name][-1][1]:.4f}",
            flush=True,
        )
    return curves


_CONDITIONAL_NOTE = (
    "measured by --conditional (this run is unconditional): "
    "python benchmarks/objectives.py --dataset 8gaussians --conditional"
)


def run(
    dataset: str,
    names: list[str],
    *,
    budget: float,
    chunk: float,
    n_test: int,
    n_samples: int,
    fm_lr: float,
    finetune_lr: float,
    switch: float,
    seed: int,
) -> dict[str, Any]:
    """Train the named contestants interleaved in time slices; their curves and samples."""
    table = contestants(fm_lr, finetune_lr, switch)
    runners = {
        name: ObjectiveRunner(
            make_trainer(RECOMMENDED, dataset, RECOMMENDED_BATCH, n_test, seed),
            table[name],
            budget,
            seed,
        )
        for name in names
    }
    data = next(iter(runners.values())).trainer.data
    t1 = float(RECOMMENDED["t1"])
    curves = _train_interleaved(dataset, runners, Evaluator(data.test, t1), budget, chunk)
    n = min(n_samples, len(data.test), len(data.val))
    reference = data.test[:n]
    marks = [s for s in (20, 60, 120, 180) if s <= budget] or [budget]
    result: dict[str, Any] = {
        "dataset": dataset,
        "budget_s": budget,
        "chunk_s": chunk,
        "n_test": len(data.test),
        "n_samples": n,
        "options": {"fm_lr": fm_lr, "finetune_lr": finetune_lr, "switch": switch, "seed": seed},
        "recommended": RECOMMENDED,
        "contestants": {
            name: [vars(p) for p in table[name]] for name in runners
        },  # the phases, for the record
        "curves": curves,
        "iterations": {k: r.iteration for k, r in runners.items()},
        "phases_reached": {k: r.phase_index + 1 for k, r in runners.items()},
        "median_train_nfe_per_iteration": {
            k: statistics.median(r.nfe) if r.nfe else None for k, r in runners.items()
        },
        "nll_at": {k: {str(s): _at(c, s) for s in marks} for k, c in curves.items()},
        "final_nll": {k: c[-1][1] for k, c in curves.items()},
        "sample_quality": {
            k: sample_quality(r.field, reference, t1=t1, n=n, seed=seed + 100)
            for k, r in runners.items()
        },
        "sample_quality_floor": _distances(data.val[:n], reference, seed + 101),
        "conditional_8gaussians": _CONDITIONAL_NOTE,
    }
    if data.levels is not None:
        result["bits_per_dim_at"] = {
            k: {s: (None if v is None else data.bits_per_dim(v)) for s, v in at.items()}
            for k, at in result["nll_at"].items()
        }
        result["final_bits_per_dim"] = {
            k: data.bits_per_dim(v) for k, v in result["final_nll"].items()
        }
    if dataset == "8gaussians":
        result["target"] = TARGET_8GAUSSIANS
        result["seconds_to_target"] = {
            k: _first_time(c, TARGET_8GAUSSIANS) for k, c in curves.items()
        }
        result["true_density_nll_on_test"] = true_8gaussians_nll(data.test)
    return result


RECOMMENDED_BATCH = 512
"""The batch size of ``flowkit train``'s defaults (and of ``benchmarks/training.py``)."""


def run_conditional(
    names: list[str], *, budget: float, chunk: float, n_test: int, fm_lr: float, seed: int
) -> dict[str, Any]:
    """Class-conditional 8gaussians: conditional contestants against the true conditional.

    The recommended field gets ``context_dim=8``; each batch and each test point
    carries the one-hot component it was drawn from as its context.
    """
    table = contestants(fm_lr, 3e-3, 0.5)
    values = {**RECOMMENDED, "field_options": {**RECOMMENDED["field_options"], "context_dim": 8}}
    runners: dict[str, ObjectiveRunner] = {}
    labelled = None
    for name in names:
        trainer = make_trainer(values, CONDITIONAL_DATASET, RECOMMENDED_BATCH, n_test, seed)
        labelled = labelled or labelled_splits(trainer)
        batches = ConditionalBatches(trainer, labelled)
        runners[name] = ObjectiveRunner(trainer, table[name], budget, seed, batches)
    assert labelled is not None and labelled.test_labels is not None
    assert labelled.n_classes is not None
    t1 = float(RECOMMENDED["t1"])
    evaluate = ConditionalEvaluator(labelled.test, labelled.test_labels, labelled.n_classes, t1)
    curves = _train_interleaved(CONDITIONAL_DATASET, runners, evaluate, budget, chunk)
    true_nll = true_conditional_8gaussians_nll(labelled.test, labelled.test_labels, labelled)
    marks = [s for s in (20, 60, 120, 180) if s <= budget] or [budget]
    final = {k: c[-1][1] for k, c in curves.items()}
    gap = {k: v - true_nll for k, v in final.items()}
    return {
        "dataset": CONDITIONAL_DATASET,
        "conditional": True,
        "context": "one-hot mixture component (8 classes); field context_dim=8",
        "budget_s": budget,
        "chunk_s": chunk,
        "n_test": len(labelled.test),
        "options": {"fm_lr": fm_lr, "seed": seed},
        "recommended": RECOMMENDED,
        "contestants": {name: [vars(p) for p in table[name]] for name in runners},
        "curves": curves,
        "iterations": {k: r.iteration for k, r in runners.items()},
        "median_train_nfe_per_iteration": {
            k: statistics.median(r.nfe) if r.nfe else None for k, r in runners.items()
        },
        "nll_at": {k: {str(s): _at(c, s) for s in marks} for k, c in curves.items()},
        "final_conditional_nll": final,
        "true_conditional_nll_on_test": true_nll,
        "gap_to_true_nats": gap,
        "goal_gap_nats": GOAL_GAP_NATS,
        "goal_met": {k: abs(v) <= GOAL_GAP_NATS for k, v in gap.items()},
    }


def print_conditional_table(result: dict[str, Any]) -> None:
    """The figures of :func:`run_conditional`, one row per contestant."""
    marks = list(next(iter(result["nll_at"].values())))
    print(
        f"{'contestant':<20} {'iters':>7} "
        + " ".join(f"{'cNLL@' + s + 's':>10}" for s in marks)
        + f" {'gap':>8} {'goal':>5}"
    )
    for name in result["curves"]:
        print(
            f"{name:<20} {result['iterations'][name]:>7} "
            + " ".join(f"{_fmt(result['nll_at'][name][s]):>10}" for s in marks)
            + f" {result['gap_to_true_nats'][name]:>+8.4f}"
            + f" {'met' if result['goal_met'][name] else 'no':>5}"
        )
    print(
        f"true conditional density NLL on the test points: "
        f"{result['true_conditional_nll_on_test']:.4f} (goal: within "
        f"{result['goal_gap_nats']} nats)"
    )


def _fmt(value: float | None, spec: str = ".3f") -> str:
    return "-" if value is None else format(value, spec)


def print_table(result: dict[str, Any]) -> None:
    """The figures of :func:`run`, one row per contestant."""
    marks = list(next(iter(result["nll_at"].values())))
    bpd = "final_bits_per_dim" in result
    head = (
        f"{'contestant':<20} {'iters':>7} "
        + " ".join(f"{'NLL@' + s + 's':>9}" for s in marks)
        + (f" {'bpd':>7}" if bpd else "")
        + (f" {'t->' + str(result['target']):>9}" if "target" in result else "")
        + f" {'SW2 dopri5':>10} {'ED dopri5':>10} {'NFE':>5} {'SW2 eul4':>9} {'SW2 mid4':>9}"
    )
    print(head)
    for name in result["curves"]:
        q = result["sample_quality"][name]
        ref = q["dopri5_1e-5"]
        row = (
            f"{name:<20} {result['iterations'][name]:>7} "
            + " ".join(f"{_fmt(result['nll_at'][name][s]):>9}" for s in marks)
            + (f" {_fmt(result['final_bits_per_dim'][name]):>7}" if bpd else "")
            + (
                f" {_fmt(result['seconds_to_target'][name], '.1f'):>9}"
                if "target" in result
                else ""
            )
            + f" {ref['sliced_w2']:>10.4f} {ref['energy_distance']:>10.4f} {ref['nfe']:>5}"
            + f" {q['euler_4']['sliced_w2']:>9.4f}"
            + f" {q['midpoint_4']['sliced_w2']:>9.4f}"
        )
        print(row)
    floor = result["sample_quality_floor"]
    print(
        f"held-out floor (val vs test, n = {result['n_samples']}): SW2 {floor['sliced_w2']:.4f}, "
        f"ED {floor['energy_distance']:.4f}"
    )
    if "true_density_nll_on_test" in result:
        print(f"true density NLL on the test points: {result['true_density_nll_on_test']:.4f}")
    print(f"class-conditional 8gaussians: {result['conditional_8gaussians']}")


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
    )


if __name__ == "__main__":
    sys.exit(main())
