"""The registry the test suite resolves names in: built-ins only, no entry-point autoload.

Whatever plugins happen to be installed do not change the suite. Tests that
are about discovery (entry points, autoload, installed plugins) build their
own registry with :func:`flowkit.registry.build_registry`.
"""

from __future__ import annotations

import functools

from flowkit.registry import Registry, build_registry

__all__ = ["suite_registry"]


@functools.cache
def suite_registry() -> Registry:
    """The built-in components only: no entry points, nothing blocked by the environment."""
    return build_registry(autoload=False, blocked=())
