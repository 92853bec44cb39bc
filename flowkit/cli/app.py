"""The Typer application, and the one function that adds the subcommands to it.

Its root group (:class:`~flowkit.cli.errors.UserErrorGroup`) reports every user
error of every subcommand in one line with exit status 2.
"""

from __future__ import annotations

import typer

from flowkit._version import __version__
from flowkit.cli.errors import UserErrorGroup

__all__ = ["app", "attach_subcommands", "main"]

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


def attach_subcommands() -> typer.Typer:
    """Add the subcommands (list, bench, train, sample, evaluate) to :data:`app` (once).

    Returns the app.

    The subcommands are defined in their own modules, which do not know the
    app; this is the one place that puts them on it. They are imported here,
    on first use, so that ``flowkit --version`` stays quick.
    """
    from flowkit.cli.bench_cmd import bench
    from flowkit.cli.list_cmd import list_components
    from flowkit.cli.reuse_cmd import evaluate_command, sample_command
    from flowkit.cli.train_cmd import train_command

    present = {command.name for command in app.registered_commands}
    commands = (
        ("list", list_components),
        ("bench", bench),
        ("train", train_command),
        ("sample", sample_command),
        ("evaluate", evaluate_command),
    )
    for name, command in commands:
        if name not in present:
            app.command(name)(command)
    return app


def main() -> None:
    """Entry point of the ``flowkit`` console script."""
    attach_subcommands()()
