"""The ``speed`` suite's goals: overhead per evaluation, exact-trace speed-up, zuko ratio.

The issues state speed goals for flowkit against plain implementations (the
solve overhead per field evaluation, at most 1.05; every training-step
configuration's time per function evaluation at most 0.85 of a plain
torchdiffeq CNF's at d = 2 with batch 512 and 4096 and at d = 8; the
vectorised exact trace against the loop over dimensions; the training step
against zuko's). :func:`speed_goals` judges them from the ``speed`` suite's
results (see :mod:`flowkit.bench.suites.speed` for what is measured).
"""

from __future__ import annotations

from typing import Any

__all__ = ["GRADIENT_FAMILY", "PER_EVALUATION_SETTINGS", "speed_goals"]

PER_EVALUATION_SETTINGS = ((2, 512), (2, 4096), (8, 512))
"""(dim, batch) at which every training-step configuration's time per function
evaluation is judged against plain torchdiffeq's (goal: at most 0.85)."""
PER_EVALUATION_LIMIT = 0.85
SOLVE_OVERHEAD_LIMIT = 1.05

GRADIENT_FAMILY = {"backprop": "backprop", "adjoint": "adjoint", "torchdiffeq_adjoint": "adjoint"}
"""flowkit gradient strategy -> the peers' equivalent (others have none)."""


def _median(res: dict[str, Any], metric: str) -> float:
    return float(res["metrics"][metric]["median"])


def speed_goals(ok: list[dict[str, Any]], ratios: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The issue's speed goals, judged from the suite's results and ratio rows.

    Arguments:
        ok: the results of the repetitions that ran.
        ratios: the flowkit/peer ratio rows derived from them.

    Returns:
        One row per goal: its name, target, measured value, whether it is met
        (``None`` when not judged) and a note on how it was measured.
    """
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
            "plain solve: time / (nfe x field eval)",
            f"<= {SOLVE_OVERHEAD_LIMIT}",
            measured,
            SOLVE_OVERHEAD_LIMIT,
            note,
            batch=batch,
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
    goals.extend(_per_evaluation_goals(ratios, by_key, nfe_note))
    goals.extend(_zuko_goals(ok, ratios, by_key))
    return goals


def _per_evaluation_goals(
    ratios: list[dict[str, Any]], by_key: dict[str, dict[str, Any]], nfe_note: Any
) -> list[dict[str, Any]]:
    """Every train-step configuration's time per evaluation against plain torchdiffeq's.

    One row per flowkit configuration (dopri5) paired with the plain torchdiffeq
    CNF on the same work (same trace family and gradient family, the plain one
    looping over dimensions for the exact trace) at each of
    :data:`PER_EVALUATION_SETTINGS`; a setting that did not run gets one row
    with nothing measured.
    """
    goals = []
    target = f"<= {PER_EVALUATION_LIMIT}"
    for dim, batch in PER_EVALUATION_SETTINGS:
        rows = [
            r
            for r in ratios
            if r["metric"] == "step_time"
            and r["peer"] == "torchdiffeq_plain"
            and r["group"].startswith("dopri5|")
            and r["group"].endswith(f"|d{dim}|b{batch}")
        ]
        for row in rows:
            label = by_key[row["numerator"]]["params"]["label"]
            per_nfe = [
                r["ratio"]
                for r in ratios
                if r["metric"] == "step_time_per_nfe"
                and (r["numerator"], r["denominator"]) == (row["numerator"], row["denominator"])
            ]
            goals.append(
                _goal(
                    f"train step per evaluation vs plain torchdiffeq ({label}, d={dim}, "
                    f"batch {batch})",
                    target,
                    per_nfe[0] if per_nfe else None,
                    PER_EVALUATION_LIMIT,
                    f"dopri5 1e-5, trained toy field; {nfe_note(row)}",
                    batch=batch,
                    judged_batches=(512, 4096),
                )
            )
        if not rows:
            goals.append(
                _goal(
                    f"train step per evaluation vs plain torchdiffeq (d={dim}, batch {batch})",
                    target,
                    None,
                    PER_EVALUATION_LIMIT,
                    "needs dopri5, the torchdiffeq_plain peer and this dimension and batch "
                    "(not in this run)",
                )
            )
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
    name: str,
    target: str,
    measured: float | None,
    limit: float,
    note: str,
    *,
    batch: int = 512,
    judged_batches: tuple[int, ...] = (512,),
) -> dict:
    """A goal row; judged only on the goal's own settings (batch 512), else ``met`` is None."""
    judged = measured is not None and batch in judged_batches
    if measured is not None and not judged:
        note += " (not judged: the goal is set at batch 512; this run used --quick)"
    return {
        "name": name,
        "target": target,
        "measured": measured,
        "met": bool(measured <= limit) if judged else None,
        "note": note,
    }
