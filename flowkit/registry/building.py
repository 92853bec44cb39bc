"""Building a registry: load the plugins, run their hooks, resolve clashes."""

from __future__ import annotations

import importlib
import traceback
from collections.abc import Iterable
from importlib.metadata import entry_points
from typing import Any

import pluggy

from flowkit import hookspecs
from flowkit.kinds import KINDS
from flowkit.registry.conflicts import resolve_registrations
from flowkit.registry.hooks import Builder, one_line, remove_plugins_with_unknown_hooks, run_hook
from flowkit.registry.lookup import Registry
from flowkit.registry.sources import (
    BUILTIN_DISTRIBUTION,
    BUILTIN_PLUGINS,
    autoload_from_environment,
    blocked_from_environment,
    distribution_of,
    same_distribution,
)
from flowkit.registry.specs import BrokenPlugin

__all__ = ["build_registry"]


def build_registry(
    *,
    autoload: bool | None = None,
    blocked: Iterable[str] | None = None,
    builtins: bool = True,
    plugins: Iterable[Any] = (),
) -> Registry:
    """Build a fresh registry.

    No plugin can make this fail: a plugin that fails to import, raises in a
    hook, implements a hook that does not exist (a misspelled hook name),
    registers an invalid name or a factory that is not of its kind, or takes a
    plugin name already taken is left out and listed in
    :attr:`Registry.broken`. A name two plugins register is withheld and raises
    :class:`~flowkit.errors.PluginConflictError` where it is used.

    Arguments:
        autoload: load installed plugins from the ``flowkit`` entry-point group;
            defaults to on unless ``FLOWKIT_DISABLE_PLUGIN_AUTOLOAD`` is set.
        blocked: plugin names never to load; defaults to ``FLOWKIT_BLOCK_PLUGINS``.
        builtins: register the plugins that ship with flowkit.
        plugins: further plugin objects (modules or instances with hook
            implementations) to register directly, as ``(name, plugin)`` pairs
            or bare objects.
    """
    if autoload is None:
        autoload = autoload_from_environment()
    if blocked is None:
        blocked = blocked_from_environment()
    pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    for name in blocked:
        pm.set_blocked(name)

    builder = Builder()
    origins: dict[str, str | None] = {}
    attempted: dict[str, str | None] = {}

    def taken(name: str, distribution: str | None, *, same_origin_is_duplicate: bool) -> bool:
        """Whether ``name`` is already used; reports a second plugin of that name.

        A plugin of the same distribution under the same name is the same
        plugin declared twice (flowkit's built-ins are also entry points).
        """
        if name not in attempted:
            return False
        first = attempted[name]
        if not (same_origin_is_duplicate and same_distribution(first, distribution)):
            builder.mark_broken(
                BrokenPlugin(
                    name,
                    distribution,
                    f"the plugin name {name!r} is already taken by another plugin (distribution "
                    f"{first or 'unknown'}), so this one was not loaded; uninstall one of the "
                    "two, or give this one another name",
                )
            )
        return True

    def add(plugin: Any, name: str, distribution: str | None) -> None:
        if pm.is_blocked(name):
            return
        if pm.get_plugin(name) is plugin:
            return
        if taken(name, distribution, same_origin_is_duplicate=distribution is not None):
            return
        attempted[name] = distribution
        try:
            pm.register(plugin, name=name)
        except Exception as exc:  # a hook signature pluggy rejects, or a duplicate object
            builder.mark_broken(
                BrokenPlugin(
                    name,
                    distribution,
                    f"could not be registered: {one_line(exc)}",
                    traceback.format_exc(),
                )
            )
            return
        origins[name] = distribution

    if builtins:
        for name, module_name in BUILTIN_PLUGINS:
            if pm.is_blocked(name):
                continue
            try:
                module = importlib.import_module(module_name)
            except (Exception, SystemExit) as exc:
                attempted[name] = BUILTIN_DISTRIBUTION
                builder.mark_broken(
                    BrokenPlugin(name, BUILTIN_DISTRIBUTION, one_line(exc), traceback.format_exc())
                )
                continue
            add(module, name, BUILTIN_DISTRIBUTION)
    if autoload:
        for ep in entry_points(group=hookspecs.ENTRY_POINT_GROUP):
            distribution = distribution_of(ep)
            if pm.is_blocked(ep.name) or taken(
                ep.name, distribution, same_origin_is_duplicate=True
            ):
                continue
            try:
                plugin = ep.load()
            except (Exception, SystemExit) as exc:
                attempted[ep.name] = distribution
                builder.mark_broken(
                    BrokenPlugin(
                        ep.name,
                        distribution,
                        f"failed to import: {one_line(exc)}",
                        traceback.format_exc(),
                    )
                )
                continue
            add(plugin, ep.name, distribution)
    for item in plugins:
        plugin_name, plugin = item if isinstance(item, tuple) else (None, item)
        plugin_name = plugin_name or pm.get_canonical_name(plugin)
        add(plugin, plugin_name, None)

    remove_plugins_with_unknown_hooks(pm, origins, builder)

    for kind, info in KINDS.items():
        caller = getattr(pm.hook, info.hook)
        for impl in caller.get_hookimpls():
            run_hook(impl, kind, origins.get(impl.plugin_name), builder)
    specs = resolve_registrations(builder)
    return Registry(specs, builder.broken, pm, builder.conflicts)
