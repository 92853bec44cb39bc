"""The speed suite's goals compare like with like (checked on planned tasks, made-up timings)."""

from __future__ import annotations

from typing import Any

import pytest
from registry_helpers import suite_registry

from flowkit.bench.peers import peer_status
from flowkit.bench.selection import Selection
from flowkit.bench.suites.base import PlanContext
from flowkit.bench.suites.speed import SpeedSuite

pytestmark = pytest.mark.skipif(peer_status("zuko") is not None, reason="zuko not installed")

STEP_TIMES = {
    # flowkit's backprop is the fastest of all; the like-for-like pairs are adjoint vs adjoint.
    "speed/flowkit/dopri5-exact-adjoint/d2/b512": 0.30,
    "speed/flowkit/dopri5-exact-backprop/d2/b512": 0.05,
    "speed/flowkit/dopri5-hutchinson-adjoint/d2/b512": 0.20,
    "speed/flowkit/dopri5-hutchinson-backprop/d2/b512": 0.04,
    "speed/zuko/dopri5-exact-adjoint/d2/b512": 0.40,
    "speed/zuko/dopri5-hutchinson-adjoint/d2/b512": 0.25,
}


def _results() -> list[dict[str, Any]]:
    """Aggregated results of the planned speed tasks, with :data:`STEP_TIMES` as medians."""
    ctx = PlanContext(
        suite_registry(),
        Selection(traces=("exact", "hutchinson"), gradients=("adjoint", "backprop")),
        peers=("zuko",),
    )
    results = []
    for task in SpeedSuite().plan(ctx).tasks:
        seconds = STEP_TIMES.get(task.key)
        if seconds is None:
            continue
        summary = {"median": seconds, "min": seconds, "max": seconds}
        results.append(
            {
                "suite": task.suite,
                "key": task.key,
                "subject": task.subject,
                "group": task.group,
                "params": dict(task.params),
                "status": "ok",
                "metrics": {
                    "step_time": summary,
                    "step_nfe": summary,
                    "step_nfe_backward": summary,
                },
            }
        )
    assert {r["key"] for r in results} == set(STEP_TIMES)  # the plan has every timed task
    return results


def test_zuko_goal_pairs_adjoint_with_adjoint_and_the_same_trace() -> None:
    results = _results()
    _, goals = SpeedSuite().derive(results)
    like = [g for g in goals if g["name"].startswith("train step vs zuko, like for like")]
    assert len(like) == 2
    by_trace = {("exact" if "-exact-" in g["name"] else "hutchinson"): g for g in like}
    assert by_trace["exact"]["measured"] == pytest.approx(0.30 / 0.40)
    assert by_trace["hutchinson"]["measured"] == pytest.approx(0.20 / 0.25)
    for trace, goal in by_trace.items():
        assert f"dopri5-{trace}-adjoint vs zuko dopri5-{trace}-aca_adjoint" in goal["note"]
        assert goal["target"] == "<= 0.6" and goal["met"] is False


def test_best_against_best_is_reported_apart_and_judged_against_nothing() -> None:
    _, goals = SpeedSuite().derive(_results())
    (best,) = [g for g in goals if g["name"].startswith("best flowkit vs best zuko")]
    assert "not like for like" in best["name"]
    assert best["met"] is None
    assert best["measured"] == pytest.approx(0.04 / 0.25)
    assert "dopri5-hutchinson-backprop" in best["note"]
    assert "dopri5-hutchinson-aca_adjoint" in best["note"]


def test_zuko_goal_without_an_adjoint_flowkit_run_is_not_measured() -> None:
    results = [r for r in _results() if r["params"].get("gradient") != "adjoint"]
    results += [r for r in _results() if r["subject"] == "zuko"]
    _, goals = SpeedSuite().derive(results)
    (like,) = [g for g in goals if g["name"].startswith("train step vs zuko, like for like")]
    assert like["measured"] is None and like["met"] is None
    assert "adjoint" in like["note"]
