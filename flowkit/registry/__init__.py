"""The component registry: building it from plugins, resolving names and options.

The registry is built on first use (:func:`get_registry`), never at import,
from the built-in plugins and every plugin installed under the ``flowkit``
entry-point group. :func:`build_registry` builds a fresh one explicitly, with
entry-point loading switchable off, which is what tests do.

One bad plugin never takes flowkit down: a plugin that fails to import,
raises in a hook, implements a misspelled hook, or registers something that is
not a component of its kind is reported in :attr:`Registry.broken` (and by
``flowkit list``) with nothing of it registered, and everything else keeps
working. A name that two plugins register is withheld: using it raises
:class:`~flowkit.errors.PluginConflictError` naming both plugins and the way
out, while every other name keeps working.

Environment variables:
    FLOWKIT_DISABLE_PLUGIN_AUTOLOAD: when ``1``/``true``/``yes``, installed
        plugins are not loaded from entry points (built-ins still are).
    FLOWKIT_BLOCK_PLUGINS: comma-separated plugin names never to load,
        built-in ones included.

Modules, one concept each: :mod:`~flowkit.registry.specs` (the record types),
:mod:`~flowkit.registry.sources` (built-ins, entry points, environment),
:mod:`~flowkit.registry.hooks` (running the plugins' hooks),
:mod:`~flowkit.registry.conflicts` (``replaces=`` and name clashes),
:mod:`~flowkit.registry.building` (:func:`build_registry`),
:mod:`~flowkit.registry.lookup` (:class:`Registry`) and
:mod:`~flowkit.registry.global_registry` (the process-wide instance, which
only the entry points ask for: the CNF constructor, ``odeint``, the CLI, the
benchmark and the training run).
"""

from __future__ import annotations

from flowkit.registry.building import build_registry
from flowkit.registry.global_registry import get_registry, reset_registry
from flowkit.registry.lookup import REGISTRY_OPTION, Registry
from flowkit.registry.sources import AUTOLOAD_ENV, BLOCK_ENV, BUILTIN_PLUGINS
from flowkit.registry.specs import BrokenPlugin, Combination, ComponentSpec, NameConflict

__all__ = [
    "AUTOLOAD_ENV",
    "BLOCK_ENV",
    "BUILTIN_PLUGINS",
    "BrokenPlugin",
    "Combination",
    "ComponentSpec",
    "NameConflict",
    "REGISTRY_OPTION",
    "Registry",
    "build_registry",
    "get_registry",
    "reset_registry",
]
