"""The ``training`` suite: objectives side by side, one evaluator, sample quality."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from registry_helpers import suite_registry
from typer.testing import CliRunner

from flowkit.bench import BenchConfig, BenchSelectionError, Selection, plan_tasks
from flowkit.bench.runner import RunSettings, run_tasks
from flowkit.bench.selection import select_objectives
from flowkit.cli.app import app, attach_subcommands

_NEW_METRICS = ("final_nll", "best_nll", "sliced_w2", "energy_distance", "sample_nfe")


def _training_tasks(**selection: tuple[str, ...]) -> list:
    config = BenchConfig(suites=("training",), selection=Selection(**selection), quick=True)
    return plan_tasks(config).tasks


def test_default_plan_compares_maximum_likelihood_flow_matching_and_score_matching() -> None:
    tasks = _training_tasks()
    objectives = [t.params["objective"] for t in tasks]
    assert set(objectives) == {"maximum_likelihood", "flow_matching", "score_matching"}
    ml = [t for t in tasks if t.params["objective"] == "maximum_likelihood"]
    assert {t.params["trace"] for t in ml} == {"exact", "hutchinson"}
    # flow and score matching never solve the ODE while training: one run per field
    assert objectives.count("flow_matching") == 1 and objectives.count("score_matching") == 1
    (score,) = [t for t in tasks if t.params["objective"] == "score_matching"]
    assert score.params["field"] == "probability_flow" and score.params["trace"] == "exact"
    assert score.params["label"] == "score_matching/probability_flow"
    assert len({t.key for t in tasks}) == len(tasks)
    assert all(t.key == f"training/{t.params['label']}" for t in tasks)


def test_every_registered_objective_is_planned_from_a_glob() -> None:
    registry = suite_registry()
    everything = select_objectives(registry, Selection(objectives=("*",)), ())
    assert everything == registry.names("objective")
    tasks = _training_tasks(objectives=("*",), traces=("exact",))
    assert {t.params["objective"] for t in tasks} == set(registry.names("objective"))


def test_objective_patterns_resolve_aliases_and_globs() -> None:
    registry = suite_registry()
    picked = select_objectives(registry, Selection(objectives=("flow_*",)), ())
    assert picked == [n for n in registry.names("objective") if n.startswith("flow_")]
    spec = next((s for s in registry.specs("objective") if s.aliases), None)
    if spec is not None:
        alias = Selection(objectives=(spec.aliases[0],))
        assert select_objectives(registry, alias, ()) == [spec.name]


@pytest.mark.parametrize(
    ("given", "closest"),
    [("flow_matchin", "flow_matching"), ("maximum_likelyhood", "maximum_likelihood")],
)
def test_unknown_objective_errors_with_did_you_mean(given: str, closest: str) -> None:
    with pytest.raises(BenchSelectionError) as info:
        _training_tasks(objectives=(given,))
    message = str(info.value)
    assert f"No objective matches {given!r}" in message and "--objectives" in message
    assert f"Did you mean {closest!r}?" in message


def test_cli_unknown_objective_is_one_line_with_exit_code_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    attach_subcommands()
    result = CliRunner().invoke(
        app, ["bench", "--suites", "training", "--objectives", "fm_then_ml", "--no-progress"]
    )
    assert result.exit_code == 2
    assert "No objective matches 'fm_then_ml'" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "bench-out").exists()


def test_quick_run_gives_every_objective_its_nll_and_sample_quality() -> None:
    tasks = _training_tasks(traces=("exact",))
    records = run_tasks(tasks, RunSettings(repeats=1, seed=1))
    assert {r.key for r in records} == {t.key for t in tasks}
    assert all(r.status == "ok" for r in records), [r.error for r in records]
    for record in records:
        metrics = record.metrics
        assert all(math.isfinite(metrics[m]) for m in _NEW_METRICS), record.key
        assert metrics["sliced_w2"] > 0 and metrics["sample_nfe"] >= 6  # dopri5: >= 1 step
        curve = record.series["nll_vs_time"]
        assert curve[0][0] == 0.0 and curve[-1][1] == metrics["final_nll"]
        assert metrics["best_nll"] == min(nll for _, nll in curve)
        if record.key == "training/score_matching/probability_flow":
            assert metrics["sample_nfe"] == 100  # reverse-SDE samples: 100 steps with --quick


def test_unknown_objective_is_an_error_even_when_training_is_not_named() -> None:
    # with the default suites a failing suite is skipped: a typo must not skip training quietly
    config = BenchConfig(selection=Selection(objectives=("flow_matchin",)), quick=True)
    with pytest.raises(BenchSelectionError, match="Did you mean 'flow_matching'"):
        plan_tasks(config)


def test_objectives_without_the_training_suite_are_refused() -> None:
    config = BenchConfig(
        suites=("accuracy",), selection=Selection(objectives=("flow_matching",)), quick=True
    )
    with pytest.raises(BenchSelectionError, match="add training to --suites"):
        plan_tasks(config)
