"""The registry the test suite resolves names in: built-ins only, no entry-point autoload.

Whatever plugins happen to be installed do not change the suite. Tests that
are about discovery (entry points, autoload, installed plugins) build their
own registry with :func:`flowkit.registry.build_registry`.
"""

from __future__ import annotations

import functools

from flowkit.plugins.vector_fields import ConcatSquashField

from flowkit.hookspecs import Register, hookimpl
from flowkit.registry import Registry, build_registry

__all__ = ["OpaqueField", "registry_with_opaque_field", "suite_registry"]


@functools.cache
def suite_registry() -> Registry:
    """The built-in components only: no entry points, nothing blocked by the environment."""
    return build_registry(autoload=False, blocked=())


class OpaqueField(ConcatSquashField):
    """FFJORD's field declaring no closed-form divergence, as many third-party fields do.

    Every built-in field knows its divergence; tests of what happens to a field
    that does not (``analytic`` refused, ``exact`` chosen instead) use this one.
    """

    has_divergence = False


class _OpaqueFieldPlugin:
    @hookimpl
    def flowkit_register_vector_fields(self, register: Register) -> None:
        register("opaque", OpaqueField)


def registry_with_opaque_field() -> Registry:
    """The suite's built-ins plus ``opaque`` (:class:`OpaqueField`), without a closed form."""
    return build_registry(
        autoload=False, blocked=(), plugins=[("opaque_field", _OpaqueFieldPlugin())]
    )
