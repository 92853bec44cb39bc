"""The ``speed`` suite: how fast is a CNF's ``log_prob`` and training step, against peers?

Work: the shipped toy field (flowkit ``mlp``, 3 x 64, tanh, briefly trained on
a 2-D toy density; :mod:`flowkit.bench.assets`) at batch 512 and 4096 (at most
two repetitions, no warm-up, at 4096), with
each selected integrator, trace and gradient strategy, tolerance 1e-5. Each
peer runs the same field with the same solver, tolerance and trace method.
Measured per repetition: the time and function evaluations of ``log_prob``
(no gradient) and of one training step (``-mean log p`` forward and backward).

Also measured, for the issue's goals: the plain solve (no trace) overhead
``time / (nfe x one field evaluation)``, and flowkit's vectorised exact trace
against the plain implementation's loop over dimensions at d = 8 (one
gradient strategy: ``backprop`` when selected).
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
from flowkit.bench.tasks import Metric, Task
from flowkit.bench.timing import median_time, stopwatch
from flowkit.registry import Registry, get_registry

__all__ = ["SpeedSuite"]

TOL = 1e-5
GRADIENT_FAMILY = {"backprop": "backprop", "adjoint": "adjoint", "torchdiffeq_adjoint": "adjoint"}
"""flowkit gradient strategy -> the peers' equivalent (others have none)."""


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
        exact_like = [c for c in picked.combinations if c.trace.name in ("exact", "exact_loop")]
        grads = sorted({c.gradient.name for c in exact_like}, key=lambda g: g != "backprop")
        exact_like = [c for c in exact_like if grads and c.gradient.name == grads[0]]
        if exact_like and asset_path(8).exists():
            batch = batches[0]
            for combo in exact_like:
                names = (combo.field.name, combo.integrator.name, combo.trace.name)
                cnf_tasks((*names, combo.gradient.name), 8, batch)
        elif exact_like:
            plan.notes.append("speed: no shipped d=8 toy field; the d >= 8 trace goal is skipped")
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
        return ratios, _goals(ok, ratios)


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


def _median(res: dict[str, Any], metric: str) -> float:
    return float(res["metrics"][metric]["median"])


def _goals(ok: list[dict[str, Any]], ratios: list[dict[str, Any]]) -> list[dict[str, Any]]:
    goals = []
    solves = {r["subject"]: r for r in ok if r["params"].get("kind") == "solve"}
    flow = solves.get("flowkit")
    measured = _median(flow, "overhead") if flow and "overhead" in flow["metrics"] else None
    peer = solves.get("torchdiffeq_plain")
    batch = flow["params"]["batch"] if flow else 512
    note = f"batch {batch}, dopri5 1e-5, trained toy field"
    if peer and "overhead" in peer["metrics"]:
        note += f"; plain torchdiffeq measured {_median(peer, 'overhead'):.3f}"
    goals.append(
        _goal(
            "plain solve: time / (nfe x field eval)", "<= 1.15", measured, 1.15, note, batch=batch
        )
    )

    def step_ratios(pred: Any) -> list[dict[str, Any]]:
        return [
            r
            for r in ratios
            if r["metric"] == "step_time" and r["peer"] == "torchdiffeq_plain" and pred(r)
        ]

    by_key = {r["key"]: r for r in ok}
    same = step_ratios(
        lambda r: (
            "|d2|b512" in r["group"]
            and r["group"].startswith("dopri5|")
            and by_key[r["numerator"]]["params"]["trace"] in ("exact_loop", "hutchinson")
        )
    )
    per_nfe = {
        (r["numerator"], r["denominator"]): r["ratio"]
        for r in ratios
        if r["metric"] == "step_time_per_nfe"
    }

    def nfe_note(row: dict[str, Any]) -> str:
        a, b = by_key[row["numerator"]], by_key[row["denominator"]]
        nfe_a = _median(a, "step_nfe") + _median(a, "step_nfe_backward")
        nfe_b = _median(b, "step_nfe") + _median(b, "step_nfe_backward")
        ratio = per_nfe.get((row["numerator"], row["denominator"]))
        shown = "-" if ratio is None else f"{ratio:.3f}"
        return f"nfe fwd+bwd {nfe_a:g} vs {nfe_b:g}; per-evaluation time ratio {shown}"

    for row in same:
        params = by_key[row["numerator"]]["params"]
        goals.append(
            _goal(
                f"train step vs plain torchdiffeq, same trace ({params['label']})",
                "<= 1.0",
                row["ratio"],
                1.0,
                f"dopri5 1e-5, d=2, batch 512; {nfe_note(row)}",
            )
        )
    if not same:
        goals.append(
            _goal(
                "train step vs plain torchdiffeq, same trace",
                "<= 1.0",
                None,
                1.0,
                "needs dopri5, trace exact_loop or hutchinson, batch 512 (not in this selection)",
            )
        )
    vec = step_ratios(
        lambda r: "|d8|" in r["group"] and by_key[r["numerator"]]["params"]["trace"] == "exact"
    )
    for row in vec:
        params = by_key[row["numerator"]]["params"]
        goals.append(
            _goal(
                f"vectorised exact trace vs plain loop, d=8 ({params['label']})",
                "<= 0.8",
                row["ratio"],
                0.8,
                f"batch {params['batch']}; {nfe_note(row)}",
                batch=params["batch"],
            )
        )
    if not vec:
        goals.append(
            _goal(
                "vectorised exact trace vs plain loop, d=8",
                "<= 0.8",
                None,
                0.8,
                "needs the exact trace and a torchdiffeq-equivalent integrator (not selected)",
            )
        )
    goals.extend(_zuko_goals(ok, ratios, by_key))
    return goals


ZUKO_LIKE_TRACES = {"exact": "exact", "hutchinson": "hutchinson"}
"""zuko's trace option -> the flowkit trace estimator doing the same computation
(zuko's exact trace is vectorised over dimensions, like flowkit's ``exact``)."""


def _zuko_goals(
    ok: list[dict[str, Any]], ratios: list[dict[str, Any]], by_key: dict[str, dict[str, Any]]
) -> list[dict[str, Any]]:
    """flowkit vs zuko: the goal like for like, and best against best as information.

    The goal (flowkit at most 0.6 of zuko's train-step time) compares the same
    work: dopri5 at the same tolerance, an adjoint on both sides (zuko only
    has its adaptive-checkpoint adjoint) and the same trace computation.
    The fastest flowkit combination against the fastest zuko one is reported
    beside it, labelled as such, and judged against nothing.
    """
    goals = []
    like = [
        r
        for r in ratios
        if r["metric"] == "step_time"
        and r["peer"] == "zuko"
        and "|d2|b512" in r["group"]
        and GRADIENT_FAMILY.get(by_key[r["numerator"]]["params"]["gradient"]) == "adjoint"
        and by_key[r["numerator"]]["params"]["trace"]
        == ZUKO_LIKE_TRACES.get(by_key[r["denominator"]]["params"]["trace"])
    ]
    for row in like:
        mine, theirs = by_key[row["numerator"]]["params"], by_key[row["denominator"]]["params"]
        goals.append(
            _goal(
                f"train step vs zuko, like for like ({mine['label']})",
                "<= 0.6",
                row["ratio"],
                0.6,
                f"flowkit {mine['label']} vs zuko {theirs['label']}: adjoint vs adjoint, "
                "same trace, dopri5 1e-5, d=2, batch 512",
            )
        )
    if not like:
        goals.append(
            _goal(
                "train step vs zuko, like for like",
                "<= 0.6",
                None,
                0.6,
                "needs zuko installed, batch 512, dopri5 with an adjoint gradient and the exact "
                "or hutchinson trace (not in this run)",
            )
        )

    def timed_at_goal_setting(subject: str) -> list[dict[str, Any]]:
        return [
            r
            for r in ok
            if r["subject"] == subject
            and r["params"].get("kind") == "cnf"
            and (r["params"]["dim"], r["params"]["batch"]) == (2, 512)
            and "step_time" in r["metrics"]
        ]

    mine, zuko = timed_at_goal_setting("flowkit"), timed_at_goal_setting("zuko")
    if mine and zuko:
        best = min(mine, key=lambda r: _median(r, "step_time"))
        zbest = min(zuko, key=lambda r: _median(r, "step_time"))
        goals.append(
            {
                "name": "best flowkit vs best zuko, train step (information, not like for like)",
                "target": "none",
                "measured": _median(best, "step_time") / _median(zbest, "step_time"),
                "met": None,
                "note": f"fastest flowkit {best['params']['label']} vs fastest zuko "
                f"{zbest['params']['label']}, tolerance 1e-5, d=2, batch 512; the two may differ "
                "in gradient method and trace",
            }
        )
    return goals


def _goal(
    name: str, target: str, measured: float | None, limit: float, note: str, *, batch: int = 512
) -> dict:
    """A goal row; judged only on the goal's own setting (batch 512), else ``met`` is None."""
    judged = measured is not None and batch == 512
    if measured is not None and not judged:
        note += " (not judged: the goal is set at batch 512; this run used --quick)"
    return {
        "name": name,
        "target": target,
        "measured": measured,
        "met": bool(measured <= limit) if judged else None,
        "note": note,
    }
