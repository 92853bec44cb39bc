"""The ``flowkit`` command line: ``list``, ``bench`` and ``train``.

Built with Typer (typed options, generated ``--help``) and Rich (tables).
Subcommands live in their own modules and are attached here.
"""

from __future__ import annotations

from flowkit.cli.app import app, main

__all__ = ["app", "main"]
