"""The ``speed`` suite: how fast is a CNF's ``log_prob`` and training step, against peers?

Work: the shipped toy field (flowkit ``mlp``, 3 x 64, tanh, briefly trained on
a 2-D toy density; :mod:`flowkit.bench.assets`) at batch 512 and 4096 (at most
two repetitions, no warm-up, at 4096), with
each selected integrator, trace and gradient strategy, tolerance 1e-5. Each
peer runs the same field with the same solver, tolerance and trace method.
Measured per repetition: the time and function evaluations of ``log_prob``
(no gradient) and of one training step (``-mean log p`` forward and backward).

Also measured, for the issue's goals: the plain solve (no trace) overhead
``time / (nfe x one field evaluation)``, and every combination again on the
shipped d = 8 field at the first batch size (the per-evaluation goals at
d = 8, and flowkit's vectorised exact trace against the plain
implementation's loop over dimensions). The goals themselves are judged in
:mod:`flowkit.bench.suites.speed_goals`.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from flowkit.bench.aggregate import ratio_rows
from flowkit.bench.assets import asset_path, load_toy_field, toy_data
from flowkit.bench.peers import peer_status
from flowkit.bench.selection import select_combinations
from flowkit.bench.subjects import PEER_TRACE, build_model, integrator_options, peer_method
from flowkit.bench.suites.base import Plan, PlanContext, Suite
from flowkit.bench.suites.common import DTYPES, seed_everything
from flowkit.bench.suites.speed_goals import GRADIENT_FAMILY, speed_goals
from flowkit.bench.tasks import Metric, Task
from flowkit.bench.timing import median_time, stopwatch
from flowkit.registry import Registry, get_registry

__all__ = ["SpeedSuite"]

TOL = 1e-5


class SpeedSuite(Suite):
    """Times ``log_prob`` and a training step on the shipped toy field (see module docstring)."""

    name: ClassVar[str] = "speed"
    question: ClassVar[str] = (
        "How long do log_prob and one training step (forward + backward) take, with how many "
        "function evaluations, on a trained toy field at batch 512 and 4096 -- and how does "
        "flowkit compare with a plain torchdiffeq CNF and zuko on the same work?"
    )
    metrics: ClassVar[tuple[Metric, ...]] = (
        Metric("step_time", "s", "lower", "train step"),
        Metric("step_nfe", "", None, "nfe fwd"),
        Metric("step_nfe_backward", "", None, "nfe bwd"),
        Metric("step_time_per_nfe", "s", "lower", "step time / nfe"),
        Metric("logp_time", "s", "lower", "log_prob"),
        Metric("logp_nfe", "", None, "log_prob nfe"),
        Metric("solve_time", "s", "lower", "plain solve"),
        Metric("field_time", "s", "lower", "one field eval"),
        Metric("nfe", "", None, "solve nfe"),
        Metric("overhead", "", "lower", "time/(nfe x field)"),
    )

    def plan(self, ctx: PlanContext) -> Plan:
        """Combinations on the ``mlp`` toy field, per batch size, plus peers and goal tasks."""
        registry = ctx.registry
        picked = select_combinations(
            registry,
            ctx.selection,
            {
                "vector_field": ("mlp",),
                "integrator": ("dopri5",),
                "trace_estimator": ("exact", "hutchinson"),
                "gradient_strategy": ("adjoint", "backprop"),
            },
            restrict={"vector_field": ("mlp",)},
        )
        plan = Plan(excluded=list(picked.excluded))
        batches = (64,) if ctx.quick else (512, 4096)
        known = ("torchdiffeq_plain", "zuko", "torchdyn")
        peers = [p for p in known if ctx.peers is None or p in ctx.peers]
        usable = []
        for peer in peers:
            problem = peer_status(peer)
            if problem is None:
                usable.append(peer)
            else:
                plan.notes.append(problem)
        base = {"dtype": ctx.dtype, "device": ctx.device, "rtol": TOL, "atol": TOL, "steps": 64}
        seen_groups: set[str] = set()

        def cnf_tasks(combo_names: tuple[str, str, str, str], dim: int, batch: int) -> None:
            field, integrator, trace, gradient = combo_names
            family = GRADIENT_FAMILY.get(gradient)
            tfam = PEER_TRACE.get(trace)
            group = f"{integrator}|{tfam}|{family}|d{dim}|b{batch}" if family and tfam else ""
            section = f"d={dim}, batch {batch}"
            params = dict(
                base,
                field=field,
                dim=dim,
                integrator=integrator,
                trace=trace,
                gradient=gradient,
                batch=batch,
                kind="cnf",
                section=section,
                label=f"{integrator}-{trace}-{gradient}",
            )
            key = f"speed/flowkit/{integrator}-{trace}-{gradient}/d{dim}/b{batch}"
            # Large batches: compute dominates and earlier tasks warmed the process up.
            large = batch > 1024
            extra = {"warmup": 0, "max_repeats": 2} if large else {"warmup": 1}
            plan.tasks.append(Task(self.name, key, "flowkit", params, group=group, **extra))
            if not group or group in seen_groups:
                return
            seen_groups.add(group)
            for peer in usable:
                if peer == "zuko" and (peer_method(integrator) != "dopri5" or family != "adjoint"):
                    continue
                if peer_method(integrator) is None:
                    continue
                if peer == "torchdyn" and not registry.get(
                    "integrator", integrator
                ).capabilities.get("adaptive"):
                    continue
                # zuko's exact trace is vectorised; the other peers loop over dimensions.
                peer_trace = "exact_loop" if tfam == "exact" and peer != "zuko" else tfam
                if peer == "zuko":
                    label = f"dopri5-{tfam}-aca_adjoint"
                elif peer == "torchdyn":
                    label = f"{peer_method(integrator)}-{tfam}-{family}"
                else:
                    loop = "-loop" if tfam == "exact" else ""
                    label = f"{peer_method(integrator)}-{tfam}{loop}-{family}"
                pparams = dict(params, trace=peer_trace, label=label)
                pkey = f"speed/{peer}/{integrator}-{tfam}-{family}/d{dim}/b{batch}"
                plan.tasks.append(Task(self.name, pkey, peer, pparams, group=group, **extra))

        for batch in batches:
            for combo in picked.combinations:
                names = (combo.field.name, combo.integrator.name, combo.trace.name)
                cnf_tasks((*names, combo.gradient.name), 2, batch)
        # quick runs keep only the exact-trace combinations at d = 8 (the trace goal)
        at_d8 = [
            c
            for c in picked.combinations
            if not ctx.quick or c.trace.name in ("exact", "exact_loop")
        ]
        if at_d8 and asset_path(8).exists():
            for combo in at_d8:
                names = (combo.field.name, combo.integrator.name, combo.trace.name)
                cnf_tasks((*names, combo.gradient.name), 8, batches[0])
        elif at_d8:
            plan.notes.append("speed: no shipped d=8 toy field; the d = 8 goals are skipped")
        solve_batch = batches[0]
        for subject in ["flowkit", *[p for p in usable if p == "torchdiffeq_plain"]]:
            params = dict(
                base,
                dim=2,
                batch=solve_batch,
                integrator="dopri5",
                kind="solve",
                section=f"plain solve, no trace, d=2, batch {solve_batch}",
                label="dopri5 (flowkit.solve)" if subject == "flowkit" else "torchdiffeq.odeint",
            )
            plan.tasks.append(
                Task(
                    self.name,
                    f"speed/{subject}/solve/b{solve_batch}",
                    subject,
                    params,
                    group="solve",
                    warmup=1,
                )
            )
        return plan

    def run(self, task: Task, seed: int) -> dict[str, float | list[list[float]]]:
        """One repetition: a ``log_prob`` and a training step (or a plain solve)."""
        p = task.params
        seed_everything(seed)
        dtype, device = DTYPES[p["dtype"]], p["device"]
        registry = get_registry()  # the task's entry point, in its own process
        field = load_toy_field(p["dim"], dtype=dtype, device=device, registry=registry)
        x = toy_data(p["dim"], p["batch"], seed=seed, dtype=dtype, device=device)
        if p["kind"] == "solve":
            return _plain_solve(registry, task.subject, field, x)
        model = build_model(
            task.subject,
            field,
            dim=p["dim"],
            integrator=p["integrator"],
            trace=p["trace"],
            gradient=p["gradient"],
            rtol=p["rtol"],
            atol=p["atol"],
            steps=p["steps"],
        )
        _, lp = model.log_prob(x)
        _, step = model.train_step(x)
        return {
            "logp_time": lp.seconds,
            "logp_nfe": lp.nfe,
            "step_time": step.seconds,
            "step_nfe": step.nfe,
            "step_nfe_backward": step.nfe_backward,
            "step_time_per_nfe": step.seconds / max(step.nfe + step.nfe_backward, 1),
        }

    def derive(
        self, results: list[dict[str, Any]]
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """flowkit/peer ratios per group, and the issue's speed goals."""
        ok = [r for r in results if r["status"] == "ok"]
        ratios = [
            row
            for metric in ("step_time", "step_time_per_nfe", "logp_time")
            for row in ratio_rows(ok, metric, suite=self.name)
        ]
        return ratios, speed_goals(ok, ratios)


def _plain_solve(registry: Registry, subject: str, field: torch.nn.Module, x: torch.Tensor) -> dict:
    """A solve of ``dx/dt = f(t, x)`` without trace, no gradient; overhead per evaluation."""
    import torchdiffeq

    from flowkit.solve import solve

    t = torch.tensor([0.0, 1.0], dtype=x.dtype, device=x.device)
    tt = torch.tensor(0.5, dtype=x.dtype, device=x.device)
    calls = [0]

    def counted(t_: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        calls[0] += 1
        return field(t_, y)

    with torch.no_grad():
        field_time = median_time(lambda: field(tt, x), x, repeats=50)
        opts = integrator_options(registry, "dopri5", rtol=TOL, atol=TOL, steps=0)
        with stopwatch(x) as clock:
            if subject == "flowkit":
                sol = solve(
                    field, x, t, integrator="dopri5", integrator_options=opts, registry=registry
                )
                nfe = sol.stats.nfe
            else:
                torchdiffeq.odeint(counted, x, t, rtol=TOL, atol=TOL, method="dopri5")
                nfe = calls[0]
    return {
        "solve_time": clock.seconds,
        "field_time": field_time,
        "nfe": nfe,
        "overhead": clock.seconds / (nfe * field_time),
    }
