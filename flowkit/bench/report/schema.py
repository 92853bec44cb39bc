"""The report: one JSON-serialisable dictionary, its schema and its validator.

Top-level keys (schema ``flowkit.bench/1``):

* ``schema`` -- the schema name and version;
* ``created`` -- ISO 8601 time, UTC; ``duration_s`` -- the run's wall time;
* ``machine`` -- platform, processor, CPU count, torch threads, device;
* ``versions`` -- Python, flowkit, torch and every peer library found;
* ``settings`` -- suites, selection, repeats, seed, budget, workers, world size...;
* ``suites`` -- per suite: its question and metric descriptions;
* ``results`` -- one entry per task: suite, key, subject, group, params, status,
  repeats, errors, warnings, ranks, ``metrics`` (per metric: median, q1, q3, min, max, n)
  ``samples`` (the raw values) and ``series`` (curves, one per repetition);
* ``ratios`` -- flowkit / peer ratios of medians on the same work;
* ``goals`` -- the issue's goals: name, target, measured value, whether met;
* ``excluded`` -- ``{"id", "reason"}`` for combinations left out;
* ``notes`` -- messages such as skipped peers.
"""

from __future__ import annotations

import datetime as _dt
import importlib.metadata
import os
import platform
import sys
from typing import Any

import torch

__all__ = ["SCHEMA", "build_report", "machine_info", "validate_report", "versions_info"]

SCHEMA = "flowkit.bench/1"

_TOP_LEVEL: dict[str, type | tuple[type, ...]] = {
    "schema": str,
    "created": str,
    "duration_s": (int, float),
    "machine": dict,
    "versions": dict,
    "settings": dict,
    "suites": dict,
    "results": list,
    "ratios": list,
    "goals": list,
    "excluded": list,
    "notes": list,
}
_RESULT_KEYS: dict[str, type | tuple[type, ...]] = {
    "suite": str,
    "key": str,
    "subject": str,
    "group": str,
    "params": dict,
    "status": str,
    "repeats": int,
    "errors": list,
    "warnings": list,
    "ranks": list,
    "metrics": dict,
    "samples": dict,
    "series": dict,
}
_SUMMARY_KEYS = ("median", "q1", "q3", "min", "max", "n")
_STATUSES = ("ok", "error", "timeout", "skipped")


def machine_info(device: str = "cpu") -> dict[str, Any]:
    """The machine the benchmark ran on."""
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": device,
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return info


def versions_info() -> dict[str, str | None]:
    """Versions of Python and of every library the benchmark may use (``None``: absent)."""
    versions: dict[str, str | None] = {"python": sys.version.split()[0]}
    for dist in ("flowkit", "torch", "torchdiffeq", "torchsde", "numpy", "zuko", "torchdyn"):
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            versions[dist] = None
    return versions


def build_report(
    *,
    settings: dict[str, Any],
    suites: dict[str, Any],
    results: list[dict[str, Any]],
    ratios: list[dict[str, Any]],
    goals: list[dict[str, Any]],
    excluded: list[dict[str, str]],
    notes: list[str],
    duration_s: float,
    device: str = "cpu",
) -> dict[str, Any]:
    """Assemble a report that passes :func:`validate_report`."""
    report = {
        "schema": SCHEMA,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "duration_s": duration_s,
        "machine": machine_info(device),
        "versions": versions_info(),
        "settings": settings,
        "suites": suites,
        "results": results,
        "ratios": ratios,
        "goals": goals,
        "excluded": excluded,
        "notes": notes,
    }
    validate_report(report)
    return report


def _check(cond: bool, message: str) -> None:
    if not cond:
        raise ValueError(f"Invalid benchmark report: {message}.")


def validate_report(report: dict[str, Any]) -> None:
    """Check a report against the schema described in this module.

    Raises:
        ValueError: naming the first key or value that does not conform.
    """
    _check(isinstance(report, dict), "not a JSON object")
    for key, typ in _TOP_LEVEL.items():
        _check(key in report, f"missing top-level key {key!r}")
        _check(isinstance(report[key], typ), f"{key!r} has type {type(report[key]).__name__}")
    _check(report["schema"] == SCHEMA, f"schema {report['schema']!r} is not {SCHEMA!r}")
    for i, res in enumerate(report["results"]):
        for key, typ in _RESULT_KEYS.items():
            _check(key in res, f"results[{i}] lacks {key!r}")
            _check(isinstance(res[key], typ), f"results[{i}][{key!r}] has the wrong type")
        _check(res["status"] in _STATUSES, f"results[{i}] has status {res['status']!r}")
        _check(res["suite"] in report["suites"], f"results[{i}] names unknown suite")
        for name, summary in res["metrics"].items():
            for key in _SUMMARY_KEYS:
                _check(key in summary, f"results[{i}].metrics[{name!r}] lacks {key!r}")
            _check(
                summary["min"] <= summary["median"] <= summary["max"],
                f"results[{i}].metrics[{name!r}] has a median outside [min, max]",
            )
    for i, goal in enumerate(report["goals"]):
        for key in ("name", "target", "measured", "met", "note"):
            _check(key in goal, f"goals[{i}] lacks {key!r}")
    for i, row in enumerate(report["ratios"]):
        for key in ("suite", "metric", "numerator", "denominator", "peer", "ratio"):
            _check(key in row, f"ratios[{i}] lacks {key!r}")
    for name, suite in report["suites"].items():
        _check("question" in suite and "metrics" in suite, f"suites[{name!r}] is incomplete")
