"""``flowkit list``: every registered component with its origin and capabilities.

It is also the tool for diagnosing plugins, so it never fails because of one:
plugins that could not be used, with the reason and the fix, are shown in a
"broken plugins" table (``broken_plugins`` in ``--json``), and it exits 0.
"""

from __future__ import annotations

import json
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from flowkit.cli.errors import CliUsageError, did_you_mean
from flowkit.kinds import KINDS
from flowkit.registry import Registry, get_registry

__all__ = ["list_components", "render_json"]


def _format_caps(caps: dict[str, Any]) -> str:
    parts = []
    for key, value in caps.items():
        if value is True:
            parts.append(key)
        elif value is False or value == () or value is None:
            continue
        elif isinstance(value, tuple):
            parts.append(f"{key}={','.join(value)}")
        else:
            parts.append(f"{key}={value}")
    return " ".join(parts)


def render_json(registry: Registry, kind: str | None = None) -> str:
    """The ``--json`` listing.

    An object with ``components`` (one object per component, see
    :meth:`~flowkit.registry.ComponentSpec.as_dict`; of ``kind`` only, if
    given) and ``broken_plugins`` (every broken plugin, see
    :meth:`~flowkit.registry.BrokenPlugin.as_dict`).
    """
    return json.dumps(
        {
            "components": [spec.as_dict() for spec in registry.specs(kind)],
            "broken_plugins": [broken.as_dict() for broken in registry.broken],
        },
        indent=2,
    )


def list_components(
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    kind: str = typer.Option(
        None, "--kind", help=f"Only one kind: {', '.join(KINDS)}.", show_default=False
    ),
) -> None:
    """List every registered component by kind, with plugin, distribution and capabilities."""
    registry = get_registry()
    if kind is not None and kind not in KINDS:
        raise CliUsageError(
            f"--kind: unknown kind {kind!r}.{did_you_mean(kind, KINDS)} "
            f"Choose from {', '.join(KINDS)}."
        )
    if as_json:
        typer.echo(render_json(registry, kind))
        return
    console = Console()
    for kind_name, info in KINDS.items():
        if kind is not None and kind_name != kind:
            continue
        specs = registry.specs(kind_name)
        if not specs:
            continue
        table = Table(title=f"{info.label}s", title_justify="left")
        for column in ("name", "aliases", "plugin", "distribution", "capabilities"):
            table.add_column(column)
        for spec in specs:
            table.add_row(
                spec.name,
                ", ".join(spec.aliases),
                spec.plugin,
                spec.distribution or "-",
                _format_caps(spec.capabilities),
            )
        console.print(table)
    if registry.broken:
        table = Table(title="broken plugins", title_justify="left", style="red")
        for column in ("plugin", "distribution", "error"):
            table.add_column(column)
        for broken in registry.broken:
            table.add_row(broken.plugin, broken.distribution or "-", broken.error)
        console.print(table)
