"""Running the plugins' hooks: staging what each registers, and reporting broken plugins."""

from __future__ import annotations

import difflib
import re
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pluggy

from flowkit import hookspecs
from flowkit.kinds import KINDS, factory_problem, kind_info
from flowkit.registry.sources import BLOCK_ENV
from flowkit.registry.specs import BrokenPlugin, ComponentSpec, NameConflict

__all__ = ["Builder", "one_line", "remove_plugins_with_unknown_hooks", "run_hook"]

_NAME_RE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)*$")


@dataclass
class Builder:
    """What a registry build has gathered so far.

    Attributes:
        registrations: the staged specs per kind, in registration order.
        broken: the plugins that could not be (fully) used.
        conflicts: the names several plugins registered (filled in by
            :func:`~flowkit.registry.conflicts.resolve_registrations`).
    """

    registrations: dict[str, list[ComponentSpec]] = field(default_factory=dict)
    broken: list[BrokenPlugin] = field(default_factory=list)
    conflicts: list[NameConflict] = field(default_factory=list)

    def mark_broken(self, plugin: BrokenPlugin) -> None:
        """Record ``plugin`` as broken (once)."""
        if plugin not in self.broken:
            self.broken.append(plugin)


def one_line(exc: BaseException) -> str:
    """``Type: message``, first line only."""
    return f"{type(exc).__name__}: {exc}".splitlines()[0]


def _unknown_hook_message(plugin_name: str, attr: str, distribution: str | None) -> str:
    known = sorted(info.hook for info in KINDS.values())
    close = difflib.get_close_matches(attr, known, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return (
        f"Plugin {plugin_name!r} (distribution {distribution or 'unknown'}) implements "
        f"{attr!r}, which is not a flowkit hook, so none of its hooks were run.{hint} "
        f"Known hooks: {', '.join(known)}. Fix the name in the plugin, or block it with "
        f"{BLOCK_ENV}={plugin_name}."
    )


def _unknown_hooks(plugin: Any) -> list[str]:
    """The ``flowkit_*`` callables of ``plugin`` that are not flowkit hooks."""
    known = {info.hook for info in KINDS.values()}
    unknown = []
    for attr in dir(plugin):
        if not attr.startswith(f"{hookspecs.PROJECT_NAME}_") or attr in known:
            continue
        try:
            value = getattr(plugin, attr)
        except Exception:
            continue
        if callable(value):
            unknown.append(attr)
    return unknown


def remove_plugins_with_unknown_hooks(
    pm: pluggy.PluginManager, origins: dict[str, str | None], builder: Builder
) -> None:
    """Unregister, and report as broken, each plugin implementing a hook that does not exist.

    Such a plugin almost always has a misspelled hook name, so it would
    silently register less than its authors meant: none of its hooks run.
    """
    for plugin_name, plugin in pm.list_name_plugin():
        try:
            unknown = _unknown_hooks(plugin)
        except Exception as exc:
            message = f"could not be inspected: {one_line(exc)}"
        else:
            if not unknown:
                continue
            message = _unknown_hook_message(plugin_name, unknown[0], origins.get(plugin_name))
        pm.unregister(name=plugin_name)
        builder.mark_broken(BrokenPlugin(plugin_name, origins.get(plugin_name), message))
    for _ in range(len(pm.get_plugins()) + 1):
        try:
            pm.check_pending()  # hook implementations marked with an unknown name
        except pluggy.PluginValidationError as exc:
            plugin_name = pm.get_name(exc.plugin) or pm.get_canonical_name(exc.plugin)
            pm.unregister(exc.plugin)
            builder.mark_broken(
                BrokenPlugin(
                    plugin_name,
                    origins.get(plugin_name),
                    f"{exc} Fix the hook name in the plugin (known hooks: "
                    f"{', '.join(sorted(info.hook for info in KINDS.values()))}), or block it "
                    f"with {BLOCK_ENV}={plugin_name}.",
                )
            )
        else:
            return


def run_hook(impl: Any, kind: str, distribution: str | None, builder: Builder) -> None:
    """Run one hook implementation; stage what it registers, or mark its plugin broken."""
    plugin_name = impl.plugin_name
    staged: list[ComponentSpec] = []
    refused: list[str] = []
    label = kind_info(kind).label

    def refuse(error: Exception) -> Exception:
        refused.append(str(error))
        return error

    def register(
        name: str,
        factory: Callable[..., Any],
        *,
        aliases: Sequence[str] = (),
        replaces: str | None = None,
    ) -> None:
        if isinstance(aliases, str):
            raise refuse(
                TypeError(
                    f"aliases of {label} {name!r} must be a sequence of names, got the string "
                    f"{aliases!r}; write aliases=({aliases!r},)"
                )
            )
        for n in (name, *aliases, *(() if replaces is None else (replaces,))):
            if not isinstance(n, str) or not _NAME_RE.match(n):
                raise refuse(
                    ValueError(
                        f"invalid {label} name {n!r}: names are lower_snake "
                        "(letters, digits, underscores; dots separate namespaces)"
                    )
                )
        for n in (name, *aliases):
            if any(n in (s.name, *s.aliases) for s in staged):
                raise refuse(ValueError(f"the {label} name {n!r} is registered twice by one hook"))
        problem = factory_problem(factory, kind)
        if problem is not None:
            raise refuse(TypeError(f"refused {label} {name!r}: {problem}"))
        staged.append(
            ComponentSpec(
                kind=kind,
                name=name,
                factory=factory,
                aliases=tuple(aliases),
                plugin=plugin_name,
                distribution=distribution,
                replaces=replaces,
            )
        )

    try:
        impl.function(register=register)
    except (Exception, SystemExit) as exc:
        if refused and str(exc) == refused[-1]:  # our refusal, propagated by the plugin
            error = f"in {impl.function.__name__}: {refused[-1]}"
        else:
            error = f"raised in {impl.function.__name__}: {one_line(exc)}"
        builder.mark_broken(BrokenPlugin(plugin_name, distribution, error, traceback.format_exc()))
        return
    if refused:  # the plugin caught the refusal itself; still register nothing of it
        builder.mark_broken(
            BrokenPlugin(plugin_name, distribution, f"in {impl.function.__name__}: {refused[0]}")
        )
        return
    builder.registrations.setdefault(kind, []).extend(staged)
