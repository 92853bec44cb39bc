"""The one place where the command line turns user errors into a one-line message.

Every subcommand runs inside :class:`UserErrorGroup.invoke`. A user error (any
:class:`~flowkit.errors.FlowkitError`, which flowkit raises only on purpose and
always with a message saying what is wrong and how to fix it, or a usage error
of the command line itself) is printed as one line, ``Error: ...``, on stderr,
and the command exits with status 2. Anything else is a bug in flowkit or a
plugin and keeps its traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any

import typer
from typer.core import TyperGroup

from flowkit.errors import FlowkitError

try:  # typer >= 0.20 vendors click
    from typer._click.exceptions import UsageError as _ClickUsageError
except ImportError:  # pragma: no cover - older typer with click installed
    from click.exceptions import UsageError as _ClickUsageError

__all__ = ["USER_ERROR_EXIT_CODE", "CliUsageError", "UserErrorGroup", "did_you_mean", "one_line"]

USER_ERROR_EXIT_CODE = 2
"""The exit status of every user error (as for a command-line usage error)."""


class CliUsageError(FlowkitError, ValueError):
    """A command-line value that cannot be used (an unknown choice, a bad combination)."""


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """`` Did you mean 'x'?`` for the closest of ``choices`` to ``name``, or an empty string."""
    close = difflib.get_close_matches(name, list(choices), n=2, cutoff=0.6)
    return f" Did you mean {' or '.join(map(repr, close))}?" if close else ""


def one_line(message: str) -> str:
    """``message`` with its line breaks and runs of spaces folded into single spaces."""
    return " ".join(message.split())


def _usage_message(exc: _ClickUsageError) -> str:
    text = exc.format_message().rstrip()
    if text and text[-1] not in ".?!":
        text += "."
    ctx = getattr(exc, "ctx", None)
    if ctx is not None:
        text += f" Try '{ctx.command_path} --help'."
    return text


class UserErrorGroup(TyperGroup):
    """The root command group: runs a subcommand and reports user errors in one line."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except FlowkitError as exc:
            message = str(exc)
        except _ClickUsageError as exc:
            message = _usage_message(exc)
        typer.secho(f"Error: {one_line(message)}", fg=typer.colors.RED, err=True)
        raise typer.Exit(code=USER_ERROR_EXIT_CODE)
