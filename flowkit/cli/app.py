"""The Typer application that every subcommand attaches to.

Its root group (:class:`~flowkit.cli.errors.UserErrorGroup`) reports every user
error of every subcommand in one line with exit status 2.
"""

from __future__ import annotations

import typer

from flowkit._version import __version__
from flowkit.cli.errors import UserErrorGroup

__all__ = ["app", "main"]

app = typer.Typer(
    name="flowkit",
    cls=UserErrorGroup,
    help="flowkit: continuous normalizing flows from interchangeable plugins.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"flowkit {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version_callback, is_eager=True, help="Show the version."
    ),
) -> None:
    """flowkit: continuous normalizing flows from interchangeable plugins."""


def _attach_subcommands() -> None:
    from flowkit.cli import list_cmd  # noqa: F401  (registers `flowkit list`)

    for module in ("flowkit.cli.bench_cmd", "flowkit.cli.train_cmd"):
        try:
            __import__(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise


def main() -> None:
    """Entry point of the ``flowkit`` console script."""
    _attach_subcommands()
    app()
