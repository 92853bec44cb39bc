"""The ``training`` suite: which combination reaches the lowest held-out NLL in fixed time?

Work: flowkit's training loop (:class:`flowkit.train.Trainer`, Adam) trains a
CNF per selected combination on a 2-D toy density (``8gaussians``) for a
fixed budget of training wall time; the held-out negative log-likelihood
(nats) is evaluated at regular points of that budget. Evaluation time is not
counted on the time axis. One repetition per combination (a curve is costly;
its spread over seeds is left to longer runs with ``--repeats``).
"""

from __future__ import annotations

from typing import ClassVar

from flowkit.bench.selection import select_combinations
from flowkit.bench.subjects import integrator_options
from flowkit.bench.suites.base import Plan, PlanContext, Suite
from flowkit.bench.suites.common import combination_params, seed_everything
from flowkit.bench.tasks import Metric, Task
from flowkit.registry import get_registry
from flowkit.train import TrainConfig, Trainer

__all__ = ["TrainingSuite"]

DENSITY = "8gaussians"


class TrainingSuite(Suite):
    """Held-out NLL against training wall time (see the module docstring)."""

    name: ClassVar[str] = "training"
    question: ClassVar[str] = (
        f"Training on the 2-D {DENSITY} toy density for a fixed time, which combination reaches "
        "the lowest held-out negative log-likelihood, and how does it fall with wall time?"
    )
    metrics: ClassVar[tuple[Metric, ...]] = (
        Metric("final_nll", "nats", "lower", "held-out NLL"),
        Metric("best_nll", "nats", "lower", "best NLL"),
        Metric("iterations", "", "higher", "iterations"),
        Metric("train_seconds", "s", None, "train time"),
    )

    def plan(self, ctx: PlanContext) -> Plan:
        """One training run per compatible combination, each with the same time budget."""
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
        seconds = 1.0 if ctx.quick else 6.0
        for combo in picked.combinations:
            params = {
                **combination_params(combo),
                "seconds": seconds,
                "points": 4 if ctx.quick else 6,
                "batch": 64 if ctx.quick else 256,
                "hidden": [16, 16] if ctx.quick else [64, 64, 64],
                "held_out": 256 if ctx.quick else 2000,
                "dtype": ctx.dtype,
                "device": ctx.device,
                "section": f"{DENSITY}, {seconds:g} s of training each",
                "label": combo.id,
            }
            key = f"training/{combo.id}"
            plan.tasks.append(Task(self.name, key, "flowkit", params, max_repeats=1))
        return plan

    def run(self, task: Task, seed: int) -> dict[str, float | list[list[float]]]:
        """Train for the task's budget; NLL on held-out data at regular times."""
        p = task.params
        seed_everything(seed)
        registry = get_registry()  # the task's entry point, in its own process
        config = TrainConfig(
            data=DENSITY,
            n_train=20_000,
            n_val=p["held_out"],
            n_test=p["held_out"],
            field=p["field"],
            field_options={"hidden": list(p["hidden"])},
            integrator=p["integrator"],
            integrator_options=integrator_options(
                registry, p["integrator"], rtol=1e-4, atol=1e-4, steps=16
            ),
            trace=p["trace"],
            gradient=p["gradient"],
            batch_size=p["batch"],
            lr=3e-3,
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
            "iterations": trainer.iteration,
            "train_seconds": trainer.train_seconds,
            "nll_vs_time": curve,
        }
