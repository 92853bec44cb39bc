"""Medians and spreads of repeated measurements, and ratios between subjects."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

from flowkit.bench.tasks import Record, Task

__all__ = ["aggregate", "ratio_rows", "summarise"]


def summarise(values: Sequence[float]) -> dict[str, float | int]:
    """Median, quartiles, extremes and count of ``values`` (at least one)."""
    xs = sorted(float(v) for v in values)
    if len(xs) >= 2:
        q1, _, q3 = statistics.quantiles(xs, n=4, method="inclusive")
    else:
        q1 = q3 = xs[0]
    return {
        "median": statistics.median(xs),
        "q1": q1,
        "q3": q3,
        "min": xs[0],
        "max": xs[-1],
        "n": len(xs),
    }


def aggregate(tasks: Sequence[Task], records: Sequence[Record]) -> list[dict[str, Any]]:
    """One result per task: its parameters, status, and per-metric summaries.

    Warm-up records (``repeat == -1``) are left out of the statistics. A task
    whose measured repetitions all failed keeps the first error message.
    """
    by_key: dict[str, list[Record]] = {t.key: [] for t in tasks}
    for record in records:
        if record.repeat >= 0 and record.key in by_key:
            by_key[record.key].append(record)
    results = []
    for task in tasks:
        runs = by_key[task.key]
        ok = [r for r in runs if r.status == "ok"]
        metrics: dict[str, dict[str, float | int]] = {}
        samples: dict[str, list[float]] = {}
        for name in sorted({m for r in ok for m in r.metrics}):
            values = [r.metrics[name] for r in ok if name in r.metrics]
            metrics[name] = summarise(values)
            samples[name] = values
        failed = [r for r in runs if r.status in ("error", "timeout")]
        if ok:
            status = "ok"
        elif failed:
            status = failed[0].status
        else:
            status = "skipped"
        errors = sorted({r.error for r in runs if r.status != "ok" and r.error})
        results.append(
            {
                "suite": task.suite,
                "key": task.key,
                "subject": task.subject,
                "group": task.group,
                "params": dict(task.params),
                "status": status,
                "repeats": len(ok),
                "errors": errors,
                "warnings": sorted({w for r in runs for w in r.warnings}),
                "ranks": sorted({r.rank for r in runs}),
                "metrics": metrics,
                "samples": samples,
                "series": {
                    name: [r.series[name] for r in ok if name in r.series]
                    for name in sorted({n for r in ok for n in r.series})
                },
            }
        )
    return results


def ratio_rows(
    results: Sequence[dict[str, Any]],
    metric: str,
    *,
    numerator: str = "flowkit",
    suite: str | None = None,
) -> list[dict[str, Any]]:
    """``numerator`` / peer ratios of the median of ``metric`` within each group.

    Only tasks of one ``group`` (the same work: field, solver, tolerance,
    trace, batch) are compared.
    """
    rows = []
    groups: dict[str, list[dict[str, Any]]] = {}
    for res in results:
        if res["group"] and (suite is None or res["suite"] == suite) and metric in res["metrics"]:
            groups.setdefault(res["group"], []).append(res)
    for group, members in groups.items():
        mine = [m for m in members if m["subject"] == numerator]
        peers = [m for m in members if m["subject"] != numerator]
        for a in mine:
            for b in peers:
                den = b["metrics"][metric]["median"]
                if den > 0:
                    rows.append(
                        {
                            "suite": a["suite"],
                            "group": group,
                            "metric": metric,
                            "numerator": a["key"],
                            "denominator": b["key"],
                            "peer": b["subject"],
                            "section": str(a["params"].get("section", "")),
                            "numerator_label": str(a["params"].get("label", a["key"])),
                            "denominator_label": str(b["params"].get("label", b["key"])),
                            "ratio": a["metrics"][metric]["median"] / den,
                        }
                    )
    return rows
