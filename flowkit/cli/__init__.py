"""The ``flowkit`` command line: ``list``, ``bench`` and ``train``.

Built with Typer (typed options, generated ``--help``) and Rich (tables).
Subcommands live in their own modules and are added to the app by
:func:`flowkit.cli.app.attach_subcommands`.
"""

from __future__ import annotations

from flowkit.cli.app import app, main

__all__ = ["app", "main"]
