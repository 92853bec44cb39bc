"""The report on disk: JSON (everything), CSV (one row per measurement), Markdown.

:func:`check_report_dir` tells before any measurement whether the report's
folder can be written, so that a long run never ends without its report.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any

from flowkit.bench.report.plots import write_plots
from flowkit.bench.report.table import suite_tables
from flowkit.errors import FlowkitError

__all__ = [
    "CSV_COLUMNS",
    "ReportOutputError",
    "check_report_dir",
    "write_csv",
    "write_json",
    "write_markdown",
    "write_report",
]


class ReportOutputError(FlowkitError):
    """The report's folder is a file, or it cannot be created or written."""


REPORT_FILES = ("report.json", "report.csv", "report.md")
"""The files that mark a folder as holding a report."""


def check_report_dir(out: Path, *, overwrite: bool = False) -> None:
    """Check, without creating anything, that the report can be written into ``out``.

    A folder that already holds a report is refused unless ``overwrite``: an
    earlier report is never replaced without being asked.

    Raises:
        ReportOutputError: ``out`` (or a folder above it) is a file, the
            nearest existing folder is not writable, or ``out`` holds a report
            and ``overwrite`` is False.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ReportOutputError(
            f"--out {out} is a file; the report is a folder of files (report.json, "
            "report.csv, report.md, plots): give a folder's path, new or existing."
        )
    earlier = [name for name in REPORT_FILES if (out / name).exists()]
    if earlier and not overwrite:
        raise ReportOutputError(
            f"--out {out} already holds a report ({', '.join(earlier)}); pass --overwrite "
            "to replace it, or choose another --out."
        )
    existing = out
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise ReportOutputError(f"--out {out}: {existing} is a file, not a folder.")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ReportOutputError(
            f"--out {out}: cannot write to {existing} (permission denied); choose a writable --out."
        )


CSV_COLUMNS = (
    "suite",
    "key",
    "subject",
    "group",
    "status",
    "metric",
    "unit",
    "median",
    "q1",
    "q3",
    "min",
    "max",
    "n",
    "params",
)


def write_json(report: dict[str, Any], path: Path) -> Path:
    """Write the whole report as indented JSON."""
    path.write_text(json.dumps(report, indent=2, sort_keys=False) + "\n")
    return path


def write_csv(report: dict[str, Any], path: Path) -> Path:
    """One row per (task, metric); tasks without measurements get one row."""
    units = {
        (suite, m["name"]): m["unit"] for suite, s in report["suites"].items() for m in s["metrics"]
    }
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        for res in report["results"]:
            base = {k: res[k] for k in ("suite", "key", "subject", "group", "status")}
            base["params"] = json.dumps(res["params"], sort_keys=True)
            if not res["metrics"]:
                writer.writerow(base)
            for name, summary in res["metrics"].items():
                row = dict(base, metric=name, unit=units.get((res["suite"], name), ""))
                row.update({k: summary[k] for k in ("median", "q1", "q3", "min", "max", "n")})
                writer.writerow(row)
    return path


def _md_table(headers: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
    return [*lines, ""]


def write_markdown(report: dict[str, Any], path: Path, plots: list[Path] | None = None) -> Path:
    """A readable report: settings, per-suite tables (best in bold), ratios, goals, plots."""
    s = report["settings"]
    m = report["machine"]
    v = report["versions"]
    lines = [
        "# flowkit bench report",
        "",
        f"{report['created']} · {report['duration_s']:.1f} s · {m['processor']} "
        f"({m['cpu_count']} CPUs, {m['torch_threads']} torch thread(s), device {m['device']}) · "
        + ", ".join(f"{k} {val}" for k, val in v.items() if val),
        "",
        f"Suites {', '.join(s.get('suites') or [])}; repeats {s.get('repeats')}; seed "
        f"{s.get('seed')}; budget {s.get('budget_s')} s; workers {s.get('workers')}; "
        f"ranks {s.get('world_size', 1)}. Values are medians; ± is half the interquartile "
        "range; **bold** marks the best in each column.",
        "",
    ]
    for name, suite in report["suites"].items():
        lines += [f"- **{name}**: {suite['question']}"]
    lines.append("")
    for tab in suite_tables(report):
        lines += [f"## {tab.title}", ""]
        rows = [
            row[:2] + [f"**{c}**" if b else c for c, b in zip(row[2:], marks, strict=True)]
            for row, marks in zip(tab.rows, tab.best, strict=True)
        ]
        lines += _md_table(tab.headers, rows)
    if report["ratios"]:
        lines += ["## flowkit / peer ratios (same work, medians)", ""]
        lines += _md_table(
            ["metric", "where", "flowkit", "peer", "ratio"],
            [
                [
                    r["metric"],
                    r.get("section", ""),
                    r.get("numerator_label", r["numerator"]),
                    f"{r['peer']} {r.get('denominator_label', '')}",
                    f"{r['ratio']:.3f}",
                ]
                for r in report["ratios"]
            ],
        )
    if report["goals"]:
        lines += ["## Goals", ""]
        lines += _md_table(
            ["goal", "target", "measured", "met", "note"],
            [
                [
                    g["name"],
                    str(g["target"]),
                    "-" if g["measured"] is None else f"{g['measured']:.3f}",
                    {True: "yes", False: "no"}.get(g["met"], "n/a"),
                    g["note"],
                ]
                for g in report["goals"]
            ],
        )
    if report["notes"]:
        lines += ["## Notes", ""] + [f"- {n}" for n in report["notes"]] + [""]
    if plots:
        lines += ["## Plots", ""] + [f"![{p.stem}]({p.name})" for p in plots] + [""]
    path.write_text("\n".join(lines))
    return path


def write_report(report: dict[str, Any], out: Path, *, plots: bool = True) -> dict[str, Path]:
    """Write ``report.json``, ``report.csv``, ``report.md`` and the PNG plots into ``out``.

    Raises:
        ReportOutputError: ``out`` cannot be a folder or cannot be written.
    """
    check_report_dir(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ReportOutputError(f"--out {out}: cannot create the folder ({exc}).") from None
    written = {
        "json": write_json(report, out / "report.json"),
        "csv": write_csv(report, out / "report.csv"),
    }
    images = write_plots(report, out) if plots else []
    written["markdown"] = write_markdown(report, out / "report.md", images)
    for image in images:
        written[image.stem] = image
    return written
