"""Building the component registry from plugins, resolving names and options.

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
"""

from __future__ import annotations

import difflib
import functools
import importlib
import inspect
import itertools
import os
import re
import traceback
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from importlib.metadata import EntryPoint, entry_points
from typing import Any

import pluggy

from flowkit import hookspecs
from flowkit.compat import Compatibility, check_compatibility
from flowkit.errors import PluginConflictError, PluginLoadError, UnknownComponentError
from flowkit.kinds import (
    COMBINATION_KINDS,
    KINDS,
    capabilities_of,
    component_problem,
    factory_problem,
    kind_info,
)

__all__ = [
    "AUTOLOAD_ENV",
    "BLOCK_ENV",
    "BUILTIN_PLUGINS",
    "BrokenPlugin",
    "Combination",
    "ComponentSpec",
    "NameConflict",
    "Registry",
    "build_registry",
    "get_registry",
    "reset_registry",
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
)
"""(plugin name, module) of the plugins that ship with flowkit.

They are also declared in flowkit's own ``flowkit`` entry-point group; listing
them here keeps them available when entry-point autoloading is off.
"""

AUTOLOAD_ENV = "FLOWKIT_DISABLE_PLUGIN_AUTOLOAD"
BLOCK_ENV = "FLOWKIT_BLOCK_PLUGINS"
BUILTIN_DISTRIBUTION = "flowkit"

_NAME_RE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)*$")


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
        params = _keyword_parameters(self.factory)
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
def _keyword_parameters(factory: Callable[..., Any]) -> frozenset[str] | None:
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


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


class Registry:
    """Every registered component, by kind and name, and the broken plugins.

    Use :func:`get_registry` for the process-wide registry, or
    :func:`build_registry` for a fresh one.

    Attributes:
        broken: the plugins that could not be (fully) used, and why.
        conflicts: the names several plugins registered; each raises
            :class:`~flowkit.errors.PluginConflictError` where it is used.
        plugin_manager: the pluggy plugin manager the registry was built with.
    """

    def __init__(
        self,
        specs: Iterable[ComponentSpec],
        broken: Iterable[BrokenPlugin] = (),
        plugin_manager: pluggy.PluginManager | None = None,
        conflicts: Iterable[NameConflict] = (),
    ) -> None:
        self._specs: dict[str, dict[str, ComponentSpec]] = {kind: {} for kind in KINDS}
        self._aliases: dict[str, dict[str, str]] = {kind: {} for kind in KINDS}
        self._conflicts: dict[str, dict[str, NameConflict]] = {kind: {} for kind in KINDS}
        for spec in specs:
            self._specs[spec.kind][spec.name] = spec
            for alias in spec.aliases:
                self._aliases[spec.kind][alias] = spec.name
        self.conflicts: tuple[NameConflict, ...] = tuple(conflicts)
        for conflict in self.conflicts:
            for name in conflict.names or (conflict.name,):
                self._conflicts[conflict.kind][name] = conflict
        self.broken: tuple[BrokenPlugin, ...] = tuple(broken)
        self.plugin_manager = plugin_manager

    # -- lookup -------------------------------------------------------------
    def names(self, kind: str) -> list[str]:
        """The canonical names of one kind, sorted."""
        kind_info(kind)
        return sorted(self._specs[kind])

    def specs(self, kind: str | None = None) -> list[ComponentSpec]:
        """Specs of one kind (or of every kind), sorted by kind then name."""
        kinds = [kind] if kind is not None else list(KINDS)
        return [self._specs[k][n] for k in kinds for n in self.names(k)]

    def __contains__(self, key: tuple[str, str]) -> bool:
        kind, name = key
        return name in self._specs[kind] or name in self._aliases[kind]

    def get(self, kind: str, name: str) -> ComponentSpec:
        """The spec registered under ``name`` (or an alias) for ``kind``.

        Raises:
            UnknownComponentError: listing what exists and the closest matches.
            PluginConflictError: the name was registered by several plugins;
                the message names them and the way out.
        """
        info = kind_info(kind)
        if not isinstance(name, str):
            raise TypeError(f"A {info.label} name must be a string, got {type(name).__name__}.")
        key = name.strip().lower().replace("-", "_")
        conflict = self._conflicts[kind].get(key)
        if conflict is not None:
            raise conflict.error()
        canonical = self._aliases[kind].get(key, key)
        try:
            return self._specs[kind][canonical]
        except KeyError:
            pass
        known = sorted(set(self._specs[kind]) | set(self._aliases[kind]))
        close = difflib.get_close_matches(key, known, n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        broken = ""
        if self.broken:
            broken = (
                " Some plugins failed to load and may have provided it: "
                + ", ".join(dict.fromkeys(b.plugin for b in self.broken))
                + " (see `flowkit list`)."
            )
        raise UnknownComponentError(
            f"Unknown {info.label} {name!r}.{hint} Available: {', '.join(known) or '(none)'}."
            f"{broken}"
        )

    def create(self, kind: str, name: str, /, **options: Any) -> Any:
        """Build the component ``name`` of ``kind`` with validated options.

        Raises:
            UnknownComponentError: for an unknown name.
            PluginConflictError: for a name several plugins registered.
            TypeError: for an option the component does not take, naming the
                valid ones.
            PluginLoadError: the plugin's factory built something that is not
                a component of ``kind``.
        """
        spec = self.get(kind, name)
        valid = _keyword_parameters(spec.factory)
        if valid is not None:
            unknown = sorted(set(options) - valid)
            if unknown:
                raise TypeError(
                    f"Unknown option(s) {', '.join(repr(u) for u in unknown)} for "
                    f"{kind_info(kind).label} {spec.name!r}. Valid options: "
                    f"{', '.join(sorted(valid)) or '(none)'}."
                )
        component = spec.factory(**options)
        problem = component_problem(component, kind)
        if problem is not None:
            raise PluginLoadError(
                f"The {kind_info(kind).label} {spec.name!r} of {_origin(spec)} is broken: its "
                f"factory {spec.factory!r} was called with the options given, and {problem}. "
                f"Report this to the plugin's authors, or block it with {BLOCK_ENV}={spec.plugin}."
            )
        try:
            component.registry_name = spec.name
        except AttributeError:  # pragma: no cover - frozen components
            pass
        return component

    def resolve(self, kind: str, component: Any, options: dict[str, Any] | None = None) -> Any:
        """A component given by registered name (built with ``options``) or by instance.

        Raises:
            TypeError: if options are given together with an instance.
        """
        if isinstance(component, str):
            return self.create(kind, component, **(options or {}))
        if options:
            raise TypeError(
                f"Options {sorted(options)} were given for a {kind_info(kind).label} passed as an "
                "instance; configure the instance itself, or pass its registered name."
            )
        return component

    # -- combinations -------------------------------------------------------
    def combinations(
        self,
        *,
        fields: Sequence[str] | None = None,
        integrators: Sequence[str] | None = None,
        traces: Sequence[str] | None = None,
        gradients: Sequence[str] | None = None,
        valid: bool | None = True,
    ) -> Iterator[Combination]:
        """Every (field, integrator, trace, gradient) combination, judged by
        :func:`~flowkit.compat.check_compatibility`.

        ``valid=True`` yields the compatible ones, ``False`` the incompatible
        ones, ``None`` all of them.
        """
        choices = []
        for kind, selected in zip(
            COMBINATION_KINDS, (fields, integrators, traces, gradients), strict=True
        ):
            names = (
                self.names(kind) if selected is None else [self.get(kind, n).name for n in selected]
            )
            choices.append([self._specs[kind][n] for n in names])
        for f, i, tr, g in itertools.product(*choices):
            verdict = check_compatibility(field=f, integrator=i, trace=tr, gradient=g)
            if valid is None or verdict.ok == valid:
                yield Combination(f, i, tr, g, verdict)


# -- building ---------------------------------------------------------------
@dataclass
class _Registration:
    spec: ComponentSpec
    order: int


@dataclass
class _Builder:
    registrations: dict[str, list[_Registration]] = field(default_factory=dict)
    broken: list[BrokenPlugin] = field(default_factory=list)
    conflicts: list[NameConflict] = field(default_factory=list)
    counter: int = 0

    def mark_broken(self, plugin: BrokenPlugin) -> None:
        if plugin not in self.broken:
            self.broken.append(plugin)


def _distribution_of(ep: EntryPoint) -> str | None:
    dist = getattr(ep, "dist", None)
    return getattr(dist, "name", None) if dist is not None else None


def _same_distribution(a: str | None, b: str | None) -> bool:
    def norm(d: str | None) -> str | None:
        return None if d is None else re.sub(r"[-_.]+", "-", d).lower()

    return norm(a) == norm(b)


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
        autoload = not _truthy(os.environ.get(AUTOLOAD_ENV))
    if blocked is None:
        blocked = [b.strip() for b in os.environ.get(BLOCK_ENV, "").split(",") if b.strip()]
    pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    for name in blocked:
        pm.set_blocked(name)

    builder = _Builder()
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
        if not (same_origin_is_duplicate and _same_distribution(first, distribution)):
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
                    f"could not be registered: {_one_line(exc)}",
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
                    BrokenPlugin(name, BUILTIN_DISTRIBUTION, _one_line(exc), traceback.format_exc())
                )
                continue
            add(module, name, BUILTIN_DISTRIBUTION)
    if autoload:
        for ep in entry_points(group=hookspecs.ENTRY_POINT_GROUP):
            distribution = _distribution_of(ep)
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
                        f"failed to import: {_one_line(exc)}",
                        traceback.format_exc(),
                    )
                )
                continue
            add(plugin, ep.name, distribution)
    for item in plugins:
        plugin_name, plugin = item if isinstance(item, tuple) else (None, item)
        plugin_name = plugin_name or pm.get_canonical_name(plugin)
        add(plugin, plugin_name, None)

    _remove_plugins_with_unknown_hooks(pm, origins, builder)

    for kind, info in KINDS.items():
        caller = getattr(pm.hook, info.hook)
        for impl in caller.get_hookimpls():
            _run_hook(impl, kind, origins.get(impl.plugin_name), builder)
    specs = _resolve(builder)
    return Registry(specs, builder.broken, pm, builder.conflicts)


def _one_line(exc: BaseException) -> str:
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


def _remove_plugins_with_unknown_hooks(
    pm: pluggy.PluginManager, origins: dict[str, str | None], builder: _Builder
) -> None:
    """Unregister, and report as broken, each plugin implementing a hook that does not exist.

    Such a plugin almost always has a misspelled hook name, so it would
    silently register less than its authors meant: none of its hooks run.
    """
    for plugin_name, plugin in pm.list_name_plugin():
        try:
            unknown = _unknown_hooks(plugin)
        except Exception as exc:
            message = f"could not be inspected: {_one_line(exc)}"
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


def _run_hook(impl: Any, kind: str, distribution: str | None, builder: _Builder) -> None:
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
            error = f"raised in {impl.function.__name__}: {_one_line(exc)}"
        builder.mark_broken(BrokenPlugin(plugin_name, distribution, error, traceback.format_exc()))
        return
    if refused:  # the plugin caught the refusal itself; still register nothing of it
        builder.mark_broken(
            BrokenPlugin(plugin_name, distribution, f"in {impl.function.__name__}: {refused[0]}")
        )
        return
    for spec in staged:
        builder.counter += 1
        builder.registrations.setdefault(kind, []).append(_Registration(spec, builder.counter))


def _origin(spec: ComponentSpec) -> str:
    return f"plugin {spec.plugin!r} (distribution {spec.distribution or 'unknown'})"


def _listing(items: Sequence[str]) -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


def _clash_message(label: str, name: str, claimants: Sequence[ComponentSpec]) -> str:
    first, *later = claimants
    times = "twice" if len(claimants) == 2 else f"{len(claimants)} times"
    newer = later[-1]
    return (
        f"The {label} name {name!r} is registered {times}: "
        f"{_listing([f'by {_origin(s)}' for s in claimants])}. Nothing is renamed silently, "
        f"so {name!r} cannot be used until one plugin gives way: block one with "
        f"{BLOCK_ENV}={','.join(dict.fromkeys(s.plugin for s in later))} "
        f"(or {first.plugin}), or have the newer one declare "
        f"register({newer.name!r}, ..., replaces={name!r})."
    )


def _resolve(builder: _Builder) -> list[ComponentSpec]:
    """Apply ``replaces=`` and withhold the names several plugins registered.

    Returns the usable specs; records each clash in ``builder.conflicts`` and
    every plugin at fault in ``builder.broken``.
    """
    result: list[ComponentSpec] = []
    for kind, regs in builder.registrations.items():
        label = kind_info(kind).label
        specs = [r.spec for r in sorted(regs, key=lambda r: r.order)]
        replacers: dict[str, list[ComponentSpec]] = {}
        for spec in specs:
            if spec.replaces is not None:
                replacers.setdefault(spec.replaces, []).append(spec)
        dropped: set[int] = set()
        contested: dict[str, tuple[str, list[ComponentSpec]]] = {}
        for target, candidates in replacers.items():
            if len(candidates) > 1:
                contested[target] = (
                    f"The {label} {target!r} is replaced by "
                    f"{_listing([_origin(c) for c in candidates])}, so {target!r} cannot be used "
                    f"until only one replaces it: block the others with {BLOCK_ENV}="
                    f"{','.join(dict.fromkeys(c.plugin for c in candidates[1:]))}.",
                    candidates,
                )
                continue
            (replacer,) = candidates
            victims = [s for s in specs if s is not replacer and target in (s.name, *s.aliases)]
            if not victims:
                builder.mark_broken(
                    BrokenPlugin(
                        replacer.plugin,
                        replacer.distribution,
                        f"{label} {replacer.name!r} declares replaces={target!r}, but no other "
                        f"plugin registers a {label} of that name; remove replaces=",
                    )
                )
                dropped.add(id(replacer))
                continue
            dropped.update(id(v) for v in victims)

        kept: list[ComponentSpec] = []
        claims: dict[str, list[int]] = {}
        for spec in specs:
            if id(spec) in dropped:
                continue
            if spec.replaces not in (None, spec.name, *contested):
                spec = replace(spec, aliases=tuple(dict.fromkeys((*spec.aliases, spec.replaces))))
            for n in dict.fromkeys((spec.name, *spec.aliases)):
                claims.setdefault(n, []).append(len(kept))
            kept.append(spec)

        clashes: dict[str, NameConflict] = {}
        for n, indices in claims.items():
            if len(indices) > 1 and n not in contested:
                claimants = tuple(kept[i] for i in indices)
                clashes[n] = NameConflict(kind, n, claimants, _clash_message(label, n, claimants))
                for spec in claimants[1:]:
                    builder.mark_broken(
                        BrokenPlugin(spec.plugin, spec.distribution, clashes[n].message)
                    )
        for target, (message, candidates) in contested.items():
            holders = [kept[i] for i in claims.get(target, [])]
            holders += [c for c in candidates if not any(c is h for h in holders)]
            clashes[target] = NameConflict(kind, target, tuple(holders), message)
            for spec in candidates:
                builder.mark_broken(BrokenPlugin(spec.plugin, spec.distribution, message))

        withheld_names: dict[str, list[str]] = {n: [n] for n in clashes}
        for spec in kept:
            if spec.name in clashes:  # withheld: every name of it raises the conflict
                for alias in spec.aliases:
                    if alias not in clashes:
                        withheld_names[spec.name].append(alias)
                continue
            clear = tuple(a for a in spec.aliases if a not in clashes)
            result.append(spec if clear == spec.aliases else replace(spec, aliases=clear))
        for n, conflict in clashes.items():
            names = tuple(dict.fromkeys(withheld_names[n]))
            builder.conflicts.append(replace(conflict, names=names))
    return result


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
