"""The ``training`` suite: which objective and combination train best in a fixed time?

Work: flowkit's training loop (:class:`flowkit.train.Trainer`, Adam) trains a
CNF per selected objective and combination on a 2-D toy density
(``8gaussians``) for a fixed budget of training wall time. Objectives come from
the registry (``--objectives``; default ``maximum_likelihood``,
``flow_matching`` and ``score_matching``). A simulation-free objective (flow
matching, score matching) trains without solving the ODE, so its integrator,
trace estimator and gradient strategy play no part: it runs once per vector
field. An objective that trains a score model (``requires_score_model``) trains
the ``probability_flow`` field of a noise-predicting MLP of the same size under
the VP SDE (:data:`SCORE_FIELD_OPTIONS`), and its NLL is the probability
flow's, and its samples come from the reverse-time SDE (Euler-Maruyama,
:data:`SCORE_SAMPLER_STEPS` steps, :func:`flowkit.sde.sample`), the sampler a
diffusion model is used with. A schedule of objectives (flow matching, then maximum likelihood) is
left to ``benchmarks/objectives.py``.

One evaluator for all runs: the held-out negative log-likelihood (nats) with
the exact trace and dopri5 at 1e-5, at regular points of the budget. At the end,
samples drawn with dopri5 at 1e-5 are compared with the held-out data (energy
distance and sliced W2, :mod:`flowkit.metrics`), next to the function
evaluations that sampling took. Evaluation and sampling time is not counted on
the time axis. One repetition per run (a curve is costly; its spread over seeds
is left to longer runs with ``--repeats``).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from flowkit.bench.selection import select_combinations, select_objectives
from flowkit.bench.subjects import integrator_options
from flowkit.bench.suites.base import Plan, PlanContext, Suite
from flowkit.bench.suites.common import combination_params, seed_everything
from flowkit.bench.tasks import Metric, Task
from flowkit.metrics import energy_distance, sliced_wasserstein
from flowkit.registry import get_registry
from flowkit.sde import ProbabilityFlow, sample
from flowkit.train import TrainConfig, Trainer

__all__ = ["TrainingSuite"]

DENSITY = "8gaussians"
DEFAULT_OBJECTIVES = ("maximum_likelihood", "flow_matching", "score_matching")
"""The objectives compared when ``--objectives`` is not given."""
SCORE_FIELD = "probability_flow"
"""The field an objective with ``requires_score_model`` trains."""
SCORE_FIELD_OPTIONS: dict[str, Any] = {
    "sde": "vp",
    "sde_options": {"beta_max": 10.0},
    "parametrisation": "noise",
}
"""Its options besides the network's size (chosen on validation NLL by
``benchmarks/score_matching_tuning.py``)."""
SCORE_LR = 1e-2
"""Its Adam learning rate."""
SCORE_SAMPLER_STEPS = 1000
"""Reverse-SDE steps of a score model's samples (100 with ``--quick``)."""
SLICES = 256
"""Random directions of the sliced W2."""


class TrainingSuite(Suite):
    """Held-out NLL against training wall time, per objective (see the module docstring)."""

    name: ClassVar[str] = "training"
    question: ClassVar[str] = (
        f"Training on the 2-D {DENSITY} toy density for a fixed time, which objective and "
        "combination reach the lowest held-out negative log-likelihood, how does it fall with "
        "wall time, and how close are the samples to held-out data?"
    )
    metrics: ClassVar[tuple[Metric, ...]] = (
        Metric("final_nll", "nats", "lower", "held-out NLL"),
        Metric("best_nll", "nats", "lower", "best NLL"),
        Metric("sliced_w2", "", "lower", "sliced W2"),
        Metric("energy_distance", "", "lower", "energy dist."),
        Metric("sample_nfe", "", "lower", "sampling NFE"),
        Metric("iterations", "", "higher", "iterations"),
        Metric("train_seconds", "s", None, "train time"),
    )

    def plan(self, ctx: PlanContext) -> Plan:
        """One training run per objective and compatible combination, each with the same budget.

        Raises:
            BenchSelectionError: an objective or component pattern that matches nothing.
        """
        objectives = select_objectives(ctx.registry, ctx.selection, DEFAULT_OBJECTIVES)
        picked = select_combinations(
            ctx.registry,
            ctx.selection,
            {
                "vector_field": ("mlp",),
                "integrator": ("dopri5",),
                "trace_estimator": ("exact", "hutchinson"),
                "gradient_strategy": ("adjoint",),
            },
        )
        plan = Plan(excluded=list(picked.excluded))
        seconds = 1.0 if ctx.quick else 4.0
        for objective in objectives:
            caps = ctx.registry.get("objective", objective).capabilities
            free = bool(caps["simulation_free"])
            score = bool(caps.get("requires_score_model", False))
            seen_fields: set[str] = set()
            for combo in picked.combinations:
                field = SCORE_FIELD if score else combo.field.name
                if free and field in seen_fields:
                    continue  # training never solves the ODE: one run per field is enough
                seen_fields.add(field)
                label = f"{objective}/{field}" if free else f"{objective}/{combo.id}"
                params = {
                    **combination_params(combo),
                    **({"field": field, "trace": "exact"} if score else {}),
                    "objective": objective,
                    "seconds": seconds,
                    "points": 4 if ctx.quick else 6,
                    "batch": 64 if ctx.quick else 256,
                    "hidden": [16, 16] if ctx.quick else [64, 64, 64],
                    "held_out": 256 if ctx.quick else 2000,
                    "sampler_steps": 100 if ctx.quick else SCORE_SAMPLER_STEPS,
                    "dtype": ctx.dtype,
                    "device": ctx.device,
                    "section": f"{DENSITY}, {seconds:g} s of training each",
                    "label": label,
                }
                key = f"training/{label}"
                plan.tasks.append(Task(self.name, key, "flowkit", params, max_repeats=1))
        return plan

    def run(self, task: Task, seed: int) -> dict[str, Any]:
        """Train for the task's budget; NLL on held-out data at regular times, then samples."""
        p = task.params
        seed_everything(seed)
        registry = get_registry()  # the task's entry point, in its own process
        config = TrainConfig(
            data=DENSITY,
            n_train=20_000,
            n_val=p["held_out"],
            n_test=p["held_out"],
            field=p["field"],
            field_options=_field_options(p),
            integrator=p["integrator"],
            integrator_options=integrator_options(
                registry, p["integrator"], rtol=1e-4, atol=1e-4, steps=16
            ),
            trace=p["trace"],
            gradient=p["gradient"],
            objective=p.get("objective", "maximum_likelihood"),
            eval_integrator="dopri5",
            eval_integrator_options={"rtol": 1e-5, "atol": 1e-5},
            eval_trace="exact",
            batch_size=p["batch"],
            lr=SCORE_LR if p["field"] == SCORE_FIELD else 3e-3,
            seed=seed % (2**31),
            device=p["device"],
            dtype=p["dtype"],
            plots=False,
            progress=False,
        )
        trainer = Trainer(config, write=False)
        held_out = trainer.data.test
        curve = [[0.0, trainer.evaluate(held_out)]]
        every = p["seconds"] / p["points"]
        next_eval = every
        while trainer.train_seconds < p["seconds"]:
            trainer.step()
            if trainer.train_seconds >= next_eval:
                curve.append([trainer.train_seconds, trainer.evaluate(held_out)])
                next_eval += every
        if curve[-1][0] != trainer.train_seconds:
            curve.append([trainer.train_seconds, trainer.evaluate(held_out)])
        return {
            "final_nll": curve[-1][1],
            "best_nll": min(c[1] for c in curve),
            **_sample_quality(
                trainer, held_out, seed, steps=p.get("sampler_steps", SCORE_SAMPLER_STEPS)
            ),
            "iterations": trainer.iteration,
            "train_seconds": trainer.train_seconds,
            "nll_vs_time": curve,
        }


def _field_options(p: dict[str, Any]) -> dict[str, Any]:
    """The field's options: the MLP's size, or a score model's network of that size."""
    if p["field"] == SCORE_FIELD:
        return {**SCORE_FIELD_OPTIONS, "score_field_options": {"hidden": list(p["hidden"])}}
    return {"hidden": list(p["hidden"])}


@torch.no_grad()
def _sample_quality(
    trainer: Trainer, held_out: torch.Tensor, seed: int, *, steps: int = SCORE_SAMPLER_STEPS
) -> dict[str, float]:
    """Distances between as many model samples as held-out points and those points.

    Samples are drawn by the evaluator's model (dopri5 at 1e-5), or for a score
    model by the reverse-time SDE; ``sample_nfe`` is the function evaluations
    of that solve (score evaluations for the SDE).
    """
    model = trainer.evaluation_model()
    model.eval()
    if isinstance(model.field, ProbabilityFlow):
        generator = torch.Generator(device=held_out.device).manual_seed(seed % (2**31) + 1)
        drawn = sample(model, len(held_out), n_steps=steps, generator=generator)
        return _distances(drawn.samples, held_out, seed, float(drawn.nfe))
    devices = [held_out.device] if held_out.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):  # the same noise whatever training drew
        torch.manual_seed(seed % (2**31) + 1)
        z = model.sample_base(len(held_out))
    samples = model.transform(z)
    stats = model.last_stats
    return _distances(
        samples, held_out, seed, float(stats.nfe) if stats is not None else float("nan")
    )


def _distances(
    samples: torch.Tensor, held_out: torch.Tensor, seed: int, nfe: float
) -> dict[str, float]:
    """Sliced W2 and unbiased energy distance of ``samples`` to ``held_out``, and ``nfe``."""
    x, reference = samples.double().cpu(), held_out.double().cpu()
    directions = torch.Generator().manual_seed(seed % (2**31) + 2)
    return {
        "sliced_w2": float(sliced_wasserstein(x, reference, SLICES, directions)),
        "energy_distance": float(energy_distance(x, reference, unbiased=True)),
        "sample_nfe": nfe,
    }
