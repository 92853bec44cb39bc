"""The report in the terminal: rich tables, best value in each column marked."""

from __future__ import annotations

import sys
from typing import Any

from rich.console import Console
from rich.table import Table

from flowkit.bench.report.table import suite_tables

__all__ = ["print_report"]


def print_report(report: dict[str, Any], console: Console | None = None) -> None:
    """Print every suite's table, the ratios to peers, the goals and the notes.

    The best median of each column (lowest time, error, memory...) is shown
    bold green with a ``*``; ``±`` gives half the interquartile range.
    """
    if console is None:  # piped output (CI, torchrun) gets wide tables instead of wrapped ones
        console = Console() if sys.stdout.isatty() else Console(width=160)
    for question_suite, suite in report["suites"].items():
        console.print(f"[bold]{question_suite}[/bold]: {suite['question']}")
    for tab in suite_tables(report):
        table = Table(title=tab.title, title_justify="left")
        for header in tab.headers:
            table.add_column(header, overflow="fold")
        for row, marks in zip(tab.rows, tab.best, strict=True):
            cells = row[:2] + [
                f"[bold green]{cell} *[/bold green]" if mark else cell
                for cell, mark in zip(row[2:], marks, strict=True)
            ]
            table.add_row(*cells)
        console.print(table)
    if report["ratios"]:
        table = Table(title="flowkit / peer (medians, same work)", title_justify="left")
        for header in ("metric", "where", "flowkit", "peer", "ratio"):
            table.add_column(header, overflow="fold")
        for row in report["ratios"]:
            table.add_row(
                row["metric"],
                row.get("section", ""),
                row.get("numerator_label", row["numerator"]),
                f"{row['peer']} {row.get('denominator_label', '')}",
                f"{row['ratio']:.3f}",
            )
        console.print(table)
    if report["goals"]:
        table = Table(title="goals", title_justify="left")
        for header in ("goal", "target", "measured", "met", "note"):
            table.add_column(header, overflow="fold")
        for goal in report["goals"]:
            measured = goal["measured"]
            shown = "-" if measured is None else f"{measured:.3f}"
            met = {True: "[green]yes[/green]", False: "[red]no[/red]"}.get(goal["met"], "n/a")
            table.add_row(goal["name"], str(goal["target"]), shown, met, goal["note"])
        console.print(table)
    for note in report["notes"]:
        console.print(f"[yellow]note:[/yellow] {note}")
    for item in report["excluded"][:10]:
        console.print(f"[dim]excluded {item['id']}: {item['reason']}[/dim]")
    if len(report["excluded"]) > 10:
        console.print(f"[dim]... and {len(report['excluded']) - 10} more excluded (see JSON)[/dim]")
