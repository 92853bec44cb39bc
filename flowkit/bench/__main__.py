"""``python -m flowkit.bench [options]`` is ``flowkit bench [options]`` (handy under torchrun)."""

from __future__ import annotations

import sys

__all__: list[str] = []

if __name__ == "__main__":
    from flowkit.cli.app import attach_subcommands

    attach_subcommands()(["bench", *sys.argv[1:]], prog_name="flowkit")
