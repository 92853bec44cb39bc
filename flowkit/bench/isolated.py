"""Run one benchmark repetition in this fresh process (``python -m flowkit.bench.isolated``).

Reads ``{"task", "repeat", "seed", "threads", "rank"}`` as JSON on stdin and
prints the record as one JSON line on stdout. The memory suite uses it so
that every configuration's peak is measured in a process of its own.
"""

from __future__ import annotations

import json
import sys

from flowkit.bench.runner import execute_unit

__all__ = ["main"]


def main() -> None:
    """Read the unit from stdin, run it, print its record."""
    job = json.loads(sys.stdin.read())
    record = execute_unit(job["task"], job["repeat"], job["seed"], job["threads"], job["rank"])
    sys.stdout.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
