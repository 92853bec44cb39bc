"""The rows and columns shared by the terminal table and the Markdown report."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["SuiteTable", "format_value", "suite_tables"]


def format_value(value: float, unit: str) -> str:
    """A compact human form: 3 significant digits, SI-friendly for seconds."""
    if unit == "s":
        if abs(value) < 1e-3:
            return f"{value * 1e6:.3g} µs"
        if abs(value) < 1:
            return f"{value * 1e3:.3g} ms"
        return f"{value:.3g} s"
    if unit in ("", "count") and float(value).is_integer():
        return f"{int(value)}"
    text = f"{value:.3g}"
    return f"{text} {unit}".strip()


@dataclass
class SuiteTable:
    """One table: a suite's results in one section (e.g. one batch size).

    Attributes:
        title: the table's title.
        headers: ``subject``, ``configuration`` then one per metric.
        rows: formatted cells; ``best[i][j]`` marks the best value of column j.
        best: for each row, which metric cells are the column's best.
    """

    title: str
    headers: list[str]
    rows: list[list[str]]
    best: list[list[bool]]


def _spread(summary: dict[str, float]) -> float:
    return (summary["q3"] - summary["q1"]) / 2


def suite_tables(report: dict[str, Any]) -> list[SuiteTable]:
    """Every suite's results as tables, one per section, best per column marked."""
    tables = []
    for suite_name, suite in report["suites"].items():
        metrics = suite["metrics"]
        results = [r for r in report["results"] if r["suite"] == suite_name]
        sections: dict[str, list[dict[str, Any]]] = {}
        for res in results:
            sections.setdefault(str(res["params"].get("section", "")), []).append(res)
        for section, members in sections.items():
            shown = [m for m in metrics if any(m["name"] in r["metrics"] for r in members)]
            headers = ["subject", "configuration"] + [
                f"{m['label']}" + (f" [{m['unit']}]" if m["unit"] not in ("", "s") else "")
                for m in shown
            ]
            winners: dict[str, float] = {}
            for m in shown:
                values = [
                    r["metrics"][m["name"]]["median"] for r in members if m["name"] in r["metrics"]
                ]
                if m["better"] == "lower" and len(values) > 1:
                    winners[m["name"]] = min(values)
                elif m["better"] == "higher" and len(values) > 1:
                    winners[m["name"]] = max(values)
            rows, best = [], []
            for res in members:
                row = [res["subject"], str(res["params"].get("label", res["key"]))]
                marks = []
                for m in shown:
                    summary = res["metrics"].get(m["name"])
                    if summary is None:
                        row.append("-" if res["status"] == "ok" else res["status"])
                        marks.append(False)
                        continue
                    cell = format_value(summary["median"], m["unit"])
                    spread = _spread(summary)
                    if summary["n"] > 1 and spread > 0 and m["better"] is not None:
                        cell += f" ±{format_value(spread, m['unit'])}"
                    row.append(cell)
                    marks.append(winners.get(m["name"]) == summary["median"])
                rows.append(row)
                best.append(marks)
            title = f"{suite_name}" + (f" — {section}" if section else "")
            tables.append(SuiteTable(title, headers, rows, best))
    return tables
