"""Public testing kit for plugin authors: strategies, closed forms, conformance checks."""

__all__: list[str] = []
