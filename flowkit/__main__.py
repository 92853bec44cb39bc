"""``python -m flowkit``: the same as the ``flowkit`` command."""

from flowkit.cli import main

__all__: list[str] = []

if __name__ == "__main__":
    main()
