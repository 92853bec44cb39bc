"""Benchmark reports: the JSON schema, the terminal table, CSV, Markdown and plots."""

from flowkit.bench.report.files import write_csv, write_json, write_markdown, write_report
from flowkit.bench.report.plots import write_plots
from flowkit.bench.report.schema import SCHEMA, build_report, machine_info, validate_report
from flowkit.bench.report.terminal import print_report

__all__ = [
    "SCHEMA",
    "build_report",
    "machine_info",
    "print_report",
    "validate_report",
    "write_csv",
    "write_json",
    "write_markdown",
    "write_plots",
    "write_report",
]
