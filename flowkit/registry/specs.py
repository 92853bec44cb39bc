"""The registry's record types: components, broken plugins, name clashes, combinations."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flowkit.compat import Compatibility
from flowkit.errors import PluginConflictError
from flowkit.kinds import capabilities_of

__all__ = [
    "BrokenPlugin",
    "Combination",
    "ComponentSpec",
    "NameConflict",
    "keyword_parameters",
    "origin_of",
]


@dataclass(frozen=True)
class ComponentSpec:
    """One registered component: its name, factory and origin.

    Attributes:
        kind: the kind of component (``"integrator"``, ...).
        name: the canonical lower_snake name.
        factory: the class (or callable) building it from keyword options.
        aliases: further names resolving to this one.
        plugin: the name of the plugin that registered it.
        distribution: the installed distribution that plugin came from, or
            ``None`` for a plugin registered directly from code.
        replaces: the name this component superseded, if any.
    """

    kind: str
    name: str
    factory: Callable[..., Any]
    aliases: tuple[str, ...] = ()
    plugin: str = ""
    distribution: str | None = None
    replaces: str | None = None

    @property
    def capabilities(self) -> dict[str, Any]:
        """The capabilities the factory declares (see :mod:`flowkit.kinds`)."""
        return capabilities_of(self.factory, self.kind)

    def options(self) -> list[str] | None:
        """The option names the factory accepts, or ``None`` if it takes any."""
        params = keyword_parameters(self.factory)
        return None if params is None else sorted(params)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-serialisable description (the ``flowkit list --json`` schema)."""
        caps = {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.capabilities.items()}
        return {
            "kind": self.kind,
            "name": self.name,
            "aliases": list(self.aliases),
            "plugin": self.plugin,
            "distribution": self.distribution,
            "capabilities": caps,
        }


@dataclass(frozen=True)
class BrokenPlugin:
    """A plugin that could not be (fully) used, and why.

    It failed to import, raised inside a hook, implements a hook that does not
    exist, registered something that is not a component of its kind, or
    registered a name another plugin registered too.

    Attributes:
        plugin: the plugin's name.
        distribution: the distribution it came from, or ``None``.
        error: one line saying what went wrong and how to fix it.
        details: the traceback, when there is one.
    """

    plugin: str
    distribution: str | None
    error: str
    details: str = ""

    def as_dict(self) -> dict[str, Any]:
        """A JSON-serialisable description (``broken_plugins`` in ``flowkit list --json``)."""
        return {"plugin": self.plugin, "distribution": self.distribution, "error": self.error}


@dataclass(frozen=True)
class NameConflict:
    """A name that several plugins registered for one kind; using it raises.

    Attributes:
        kind: the kind of component.
        name: the name registered more than once.
        claimants: the components that registered it, in registration order.
        message: what went wrong and the way out (block a plugin, or ``replaces=``).
        names: every name that raises this conflict: ``name`` and the other
            names of the components withheld because of it.
    """

    kind: str
    name: str
    claimants: tuple[ComponentSpec, ...]
    message: str
    names: tuple[str, ...] = ()

    def error(self) -> PluginConflictError:
        """The exception raised where the name is used."""
        return PluginConflictError(self.message)


@dataclass(frozen=True)
class Combination:
    """A choice of one component per kind of :data:`COMBINATION_KINDS`."""

    field: ComponentSpec
    integrator: ComponentSpec
    trace: ComponentSpec
    gradient: ComponentSpec
    compatibility: Compatibility

    @property
    def id(self) -> str:
        """A readable id such as ``linear-dopri5-exact-adjoint``."""
        return "-".join(s.name for s in (self.field, self.integrator, self.trace, self.gradient))


@functools.lru_cache(maxsize=512)
def keyword_parameters(factory: Callable[..., Any]) -> frozenset[str] | None:
    """The keyword options ``factory`` accepts (``None``: any), cached per factory."""
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):
        return None
    names = set()
    for param in signature.parameters.values():
        if param.kind is inspect.Parameter.VAR_KEYWORD:
            return None
        if param.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY):
            names.add(param.name)
    return frozenset(names)


def origin_of(spec: ComponentSpec) -> str:
    """``plugin 'name' (distribution dist)``: where a component came from, for messages."""
    return f"plugin {spec.plugin!r} (distribution {spec.distribution or 'unknown'})"
