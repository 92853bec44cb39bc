"""The process-wide registry, built on first use; only the entry points ask for it."""

from __future__ import annotations

from flowkit.registry.building import build_registry
from flowkit.registry.lookup import Registry

__all__ = ["get_registry", "reset_registry"]

_REGISTRY: Registry | None = None


def get_registry() -> Registry:
    """The process-wide registry, built on first use."""
    global _REGISTRY
    if _REGISTRY is None:
        _REGISTRY = build_registry()
    return _REGISTRY


def reset_registry(registry: Registry | None = None) -> None:
    """Forget the process-wide registry (or install ``registry`` in its place)."""
    global _REGISTRY
    _REGISTRY = registry
