"""Benchmark selection: names and globs through the registry, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from registry_helpers import registry_with_opaque_field, suite_registry
from typer.testing import CliRunner

from flowkit.bench import BenchConfig, BenchSelectionError, Selection, plan_tasks
from flowkit.bench.selection import expand_patterns, parse_patterns, select_combinations
from flowkit.cli.app import app, attach_subcommands


def test_star_matches_every_registered_name() -> None:
    registry = suite_registry()
    for kind in ("vector_field", "integrator", "trace_estimator", "gradient_strategy"):
        assert expand_patterns(registry, kind, ["*"]) == registry.names(kind)


def test_glob_and_alias_resolve_to_canonical_names() -> None:
    registry = suite_registry()
    spec = next(s for s in registry.specs("integrator") if s.aliases)
    assert expand_patterns(registry, "integrator", [spec.aliases[0]]) == [spec.name]
    prefix = spec.name[:3]
    matched = expand_patterns(registry, "integrator", [f"{prefix}*"])
    assert spec.name in matched
    assert all(
        n.startswith(prefix)
        or any(a.startswith(prefix) for a in registry.get("integrator", n).aliases)
        for n in matched
    )


def test_parse_patterns_splits_and_rejects_empty() -> None:
    assert parse_patterns("dopri5, rk4") == ("dopri5", "rk4")
    assert parse_patterns(["a,b", "c"]) == ("a", "b", "c")
    assert parse_patterns(None) is None
    with pytest.raises(BenchSelectionError, match="Empty selection"):
        parse_patterns(" , ")


@pytest.mark.parametrize("pattern", ["no_such_solver", "zz*"])
def test_pattern_matching_nothing_lists_what_exists(pattern: str) -> None:
    registry = suite_registry()
    with pytest.raises(BenchSelectionError) as info:
        expand_patterns(registry, "integrator", [pattern])
    message = str(info.value)
    assert repr(pattern) in message and "--integrators" in message
    assert registry.names("integrator")[0] in message


def _incompatible_trace_and_field() -> tuple[str, str, str]:
    """A (trace, field, reason word) pair the compatibility function refuses.

    Every built-in field knows its divergence, so the pair comes from a registry
    holding also a field that does not (``opaque``).
    """
    registry = registry_with_opaque_field()
    for combo in registry.combinations(valid=False):
        if any("has_divergence" in r for r in combo.compatibility.reasons):
            return combo.trace.name, combo.field.name, "has_divergence"
    pytest.fail("the registry has no trace needing a closed-form divergence")


def test_incompatible_explicit_pair_is_an_error_with_the_reason() -> None:
    trace, field, word = _incompatible_trace_and_field()
    selection = Selection(fields=(field,), traces=(trace,))
    with pytest.raises(BenchSelectionError) as info:
        select_combinations(registry_with_opaque_field(), selection, {})
    assert trace in str(info.value) and word in str(info.value)


def test_glob_keeps_compatible_and_records_excluded() -> None:
    trace, field, _ = _incompatible_trace_and_field()
    selection = Selection(
        fields=(field,), integrators=("dopri5",), traces=("*",), gradients=("backprop",)
    )
    result = select_combinations(registry_with_opaque_field(), selection, {})
    assert all(c.compatibility.ok for c in result.combinations)
    assert any(trace in cid for cid, _ in result.excluded)
    assert all(c.trace.name != trace for c in result.combinations)


def test_explicit_suite_with_unusable_selection_fails_and_unknown_suite_fails() -> None:
    with pytest.raises(BenchSelectionError, match="suite 'accuracy'"):
        plan_tasks(BenchConfig(suites=("accuracy",), selection=Selection(fields=("mlp",))))
    with pytest.raises(BenchSelectionError, match="Unknown suite 'nope'"):
        plan_tasks(BenchConfig(suites=("nope",)))
    with pytest.raises(BenchSelectionError, match="Unknown peer"):
        plan_tasks(BenchConfig(peers=("nobody",)))


def test_plan_is_deterministic() -> None:
    config = BenchConfig(quick=True, suites=("accuracy", "speed"))
    first = [t.as_dict() for t in plan_tasks(config).tasks]
    assert first == [t.as_dict() for t in plan_tasks(config).tasks]
    assert len({t["key"] for t in first}) == len(first)


def test_cli_reports_bad_selection_with_exit_code_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the default --out, bench-out/, must not hold a report
    attach_subcommands()
    result = CliRunner().invoke(app, ["bench", "--integrators", "no_such_solver", "--no-progress"])
    assert result.exit_code == 2
    assert "No integrator matches 'no_such_solver'" in result.output


def test_a_suite_that_fails_to_import_raises_instead_of_vanishing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every suite ships with flowkit: a broken import is an error, not a missing suite."""
    import sys

    from flowkit.bench.suites import SUITES, available_suites, get_suite

    monkeypatch.delitem(sys.modules, "flowkit.bench.suites.training", raising=False)
    monkeypatch.setitem(sys.modules, "flowkit.train", None)  # importing it raises ImportError
    get_suite.cache_clear()
    try:
        assert available_suites() == list(SUITES)
        with pytest.raises(ImportError):
            get_suite("training")
    finally:
        get_suite.cache_clear()
