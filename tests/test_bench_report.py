"""The benchmark report: a tiny end-to-end run of every suite, the schema, the writers."""

from __future__ import annotations

import copy
import csv
import json
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from flowkit.bench import BenchConfig, Selection, run_bench, validate_report
from flowkit.bench.aggregate import ratio_rows, summarise
from flowkit.bench.report import print_report
from flowkit.bench.report.plots import pareto_front
from flowkit.bench.suites import available_suites


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path]:
    """Every available suite, quick problems, one repetition, in seconds."""
    out = tmp_path_factory.mktemp("bench")
    config = BenchConfig(
        selection=Selection(
            integrators=("dopri5", "rk4"), traces=("hutchinson",), gradients=("backprop",)
        ),
        repeats=1,
        quick=True,
        budget_s=None,
        out=out,
        progress=False,
        show=False,
    )
    report = run_bench(config)
    assert report is not None
    return report, out


def test_every_suite_runs_end_to_end(tiny_run: tuple[dict[str, Any], Path]) -> None:
    report, _ = tiny_run
    assert set(report["suites"]) == set(available_suites())
    for suite in report["suites"]:
        results = [r for r in report["results"] if r["suite"] == suite]
        assert results, suite
        failed = [(r["key"], r["errors"]) for r in results if r["status"] != "ok"]
        assert not failed
        assert all(r["metrics"] for r in results)


def test_report_files_and_schema(tiny_run: tuple[dict[str, Any], Path]) -> None:
    report, out = tiny_run
    on_disk = json.loads((out / "report.json").read_text())
    validate_report(on_disk)
    assert on_disk["settings"]["repeats"] == 1 and on_disk["settings"]["world_size"] == 1
    assert on_disk["versions"]["torch"] and on_disk["machine"]["cpu_count"]
    rows = list(csv.DictReader((out / "report.csv").open()))
    assert {r["key"] for r in rows} == {r["key"] for r in report["results"]}
    markdown = (out / "report.md").read_text()
    for suite in report["suites"]:
        assert f"## {suite}" in markdown
    pngs = ["error_vs_time.png", "memory_vs_steps.png"]
    if "training" in report["suites"]:
        pngs.append("nll_vs_time.png")
    for png in pngs:
        assert (out / png).read_bytes()[:4] == b"\x89PNG"
        assert f"({png})" in markdown


def test_accuracy_errors_are_small_for_deterministic_traces(
    tiny_run: tuple[dict[str, Any], Path],
) -> None:
    report, _ = tiny_run
    memory = [r for r in report["results"] if r["suite"] == "memory"]
    assert all(r["metrics"]["peak_mib"]["median"] >= 0 for r in memory)
    speed_flowkit = [
        r for r in report["results"] if r["suite"] == "speed" and r["subject"] == "flowkit"
    ]
    assert all(
        r["metrics"]["step_nfe"]["median"] > 0 for r in speed_flowkit if "step_nfe" in r["metrics"]
    )


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda r: r.pop("machine"), "missing top-level key 'machine'"),
        (lambda r: r.__setitem__("schema", "other/0"), "schema"),
        (lambda r: r["results"][0].__setitem__("status", "fine"), "status"),
        (lambda r: r["results"][0].pop("params"), "lacks 'params'"),
    ],
)
def test_validate_report_rejects_broken_reports(
    tiny_run: tuple[dict[str, Any], Path], mutate: Any, message: str
) -> None:
    broken = copy.deepcopy(tiny_run[0])
    mutate(broken)
    with pytest.raises(ValueError, match=message):
        validate_report(broken)


def test_validate_report_rejects_median_outside_range(
    tiny_run: tuple[dict[str, Any], Path],
) -> None:
    broken = copy.deepcopy(tiny_run[0])
    res = next(r for r in broken["results"] if r["metrics"])
    summary = next(iter(res["metrics"].values()))
    summary["median"] = summary["max"] + 1.0
    with pytest.raises(ValueError, match="median outside"):
        validate_report(broken)


def test_terminal_table_marks_the_best(tiny_run: tuple[dict[str, Any], Path]) -> None:
    console = Console(record=True, width=200)
    print_report(tiny_run[0], console)
    text = console.export_text()
    assert " *" in text
    for suite in tiny_run[0]["suites"]:
        assert suite in text


def test_summarise_median_and_quartiles() -> None:
    s = summarise([5.0, 1.0, 3.0, 2.0, 4.0])
    assert (s["median"], s["q1"], s["q3"], s["min"], s["max"], s["n"]) == (
        3.0,
        2.0,
        4.0,
        1.0,
        5.0,
        5,
    )
    single = summarise([7.0])
    assert single["q1"] == single["q3"] == single["median"] == 7.0


def test_ratio_rows_divide_medians_within_a_group() -> None:
    def res(key: str, subject: str, group: str, value: float) -> dict[str, Any]:
        return {
            "suite": "speed",
            "key": key,
            "subject": subject,
            "group": group,
            "params": {},
            "metrics": {"t": summarise([value])},
        }

    rows = ratio_rows(
        [res("a", "flowkit", "g", 2.0), res("b", "peer", "g", 4.0), res("c", "peer", "h", 1.0)], "t"
    )
    assert [(r["numerator"], r["denominator"], r["ratio"]) for r in rows] == [("a", "b", 0.5)]


def test_pareto_front() -> None:
    points = [(1.0, 5.0), (2.0, 3.0), (3.0, 4.0), (4.0, 1.0), (2.5, 3.0)]
    assert pareto_front(points) == [(1.0, 5.0), (2.0, 3.0), (4.0, 1.0)]
