"""Where plugins come from: the built-ins, the entry-point group, and the environment."""

from __future__ import annotations

import os
import re
from importlib.metadata import EntryPoint

__all__ = [
    "AUTOLOAD_ENV",
    "BLOCK_ENV",
    "BUILTIN_DISTRIBUTION",
    "BUILTIN_PLUGINS",
    "autoload_from_environment",
    "blocked_from_environment",
    "distribution_of",
    "same_distribution",
]

BUILTIN_PLUGINS: tuple[tuple[str, str], ...] = (
    ("native_integrators", "flowkit.plugins.native_integrators"),
    ("torchdiffeq", "flowkit.plugins.torchdiffeq_backend"),
    ("torchsde", "flowkit.plugins.torchsde_backend"),
    ("gradients", "flowkit.plugins.gradients"),
    ("vector_fields", "flowkit.plugins.vector_fields"),
    ("trace_estimators", "flowkit.plugins.trace_estimators"),
    ("regularizers", "flowkit.plugins.regularizers"),
    ("objectives", "flowkit.plugins.objectives"),
    ("sdes", "flowkit.plugins.sdes"),
    ("sde_integrators", "flowkit.plugins.sde_integrators"),
)
"""(plugin name, module) of the plugins that ship with flowkit.

They are also declared in flowkit's own ``flowkit`` entry-point group; listing
them here keeps them available when entry-point autoloading is off.
"""

AUTOLOAD_ENV = "FLOWKIT_DISABLE_PLUGIN_AUTOLOAD"
BLOCK_ENV = "FLOWKIT_BLOCK_PLUGINS"
BUILTIN_DISTRIBUTION = "flowkit"


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


def autoload_from_environment() -> bool:
    """Whether entry-point plugins load (yes unless ``FLOWKIT_DISABLE_PLUGIN_AUTOLOAD`` is set)."""
    return not _truthy(os.environ.get(AUTOLOAD_ENV))


def blocked_from_environment() -> list[str]:
    """The plugin names ``FLOWKIT_BLOCK_PLUGINS`` blocks (comma-separated)."""
    return [b.strip() for b in os.environ.get(BLOCK_ENV, "").split(",") if b.strip()]


def distribution_of(ep: EntryPoint) -> str | None:
    """The name of the distribution an entry point comes from, if known."""
    dist = getattr(ep, "dist", None)
    return getattr(dist, "name", None) if dist is not None else None


def same_distribution(a: str | None, b: str | None) -> bool:
    """Whether two distribution names are one (normalised as pip does)."""

    def norm(d: str | None) -> str | None:
        return None if d is None else re.sub(r"[-_.]+", "-", d).lower()

    return norm(a) == norm(b)
