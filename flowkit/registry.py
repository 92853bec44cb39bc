"""Building the component registry from plugins, resolving names and options.

The registry is built on first use (:func:`get_registry`), never at import,
from the built-in plugins and every plugin installed under the ``flowkit``
entry-point group. :func:`build_registry` builds a fresh one explicitly, with
entry-point loading switchable off, which is what tests do.

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
from flowkit.kinds import COMBINATION_KINDS, KINDS, capabilities_of, kind_info

__all__ = [
    "AUTOLOAD_ENV",
    "BLOCK_ENV",
    "BUILTIN_PLUGINS",
    "BrokenPlugin",
    "Combination",
    "ComponentSpec",
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
    """A plugin that failed to import or raised inside a hook."""

    plugin: str
    distribution: str | None
    error: str
    details: str = ""


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
    """

    def __init__(
        self,
        specs: Iterable[ComponentSpec],
        broken: Iterable[BrokenPlugin] = (),
        plugin_manager: pluggy.PluginManager | None = None,
    ) -> None:
        self._specs: dict[str, dict[str, ComponentSpec]] = {kind: {} for kind in KINDS}
        self._aliases: dict[str, dict[str, str]] = {kind: {} for kind in KINDS}
        for spec in specs:
            self._specs[spec.kind][spec.name] = spec
            for alias in spec.aliases:
                self._aliases[spec.kind][alias] = spec.name
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
        """
        info = kind_info(kind)
        if not isinstance(name, str):
            raise TypeError(f"A {info.label} name must be a string, got {type(name).__name__}.")
        key = name.strip().lower().replace("-", "_")
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
                + ", ".join(b.plugin for b in self.broken)
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
            TypeError: for an option the component does not take, naming the
                valid ones.
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
    counter: int = 0


def _distribution_of(ep: EntryPoint) -> str | None:
    dist = getattr(ep, "dist", None)
    return getattr(dist, "name", None) if dist is not None else None


def build_registry(
    *,
    autoload: bool | None = None,
    blocked: Iterable[str] | None = None,
    builtins: bool = True,
    plugins: Iterable[Any] = (),
) -> Registry:
    """Build a fresh registry.

    Arguments:
        autoload: load installed plugins from the ``flowkit`` entry-point group;
            defaults to on unless ``FLOWKIT_DISABLE_PLUGIN_AUTOLOAD`` is set.
        blocked: plugin names never to load; defaults to ``FLOWKIT_BLOCK_PLUGINS``.
        builtins: register the plugins that ship with flowkit.
        plugins: further plugin objects (modules or instances with hook
            implementations) to register directly, as ``(name, plugin)`` pairs
            or bare objects.

    Raises:
        PluginConflictError: two plugins registered one name of a kind.
        PluginLoadError: a plugin implements a ``flowkit_*`` hook that does
            not exist (a misspelled hook name).
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
    attempted: set[str] = set()

    def add(plugin: Any, name: str, distribution: str | None) -> None:
        if pm.is_blocked(name) or pm.get_plugin(name) is not None:
            return
        try:
            pm.register(plugin, name=name)
        except ValueError as exc:  # the same object under two names
            builder.broken.append(BrokenPlugin(name, distribution, str(exc)))
            return
        origins[name] = distribution

    if builtins:
        for name, module_name in BUILTIN_PLUGINS:
            if pm.is_blocked(name):
                continue
            attempted.add(name)
            try:
                module = importlib.import_module(module_name)
            except Exception as exc:
                builder.broken.append(
                    BrokenPlugin(name, BUILTIN_DISTRIBUTION, _one_line(exc), traceback.format_exc())
                )
                continue
            add(module, name, BUILTIN_DISTRIBUTION)
    if autoload:
        for ep in entry_points(group=hookspecs.ENTRY_POINT_GROUP):
            if ep.name in attempted or pm.is_blocked(ep.name) or pm.get_plugin(ep.name):
                continue
            attempted.add(ep.name)
            try:
                plugin = ep.load()
            except Exception as exc:
                builder.broken.append(
                    BrokenPlugin(
                        ep.name,
                        _distribution_of(ep),
                        f"failed to import: {_one_line(exc)}",
                        traceback.format_exc(),
                    )
                )
                continue
            add(plugin, ep.name, _distribution_of(ep))
    for item in plugins:
        plugin_name, plugin = item if isinstance(item, tuple) else (None, item)
        plugin_name = plugin_name or pm.get_canonical_name(plugin)
        add(plugin, plugin_name, None)

    _check_hook_names(pm, origins)

    for kind, info in KINDS.items():
        caller = getattr(pm.hook, info.hook)
        for impl in caller.get_hookimpls():
            _run_hook(impl, kind, origins.get(impl.plugin_name), builder)
    specs = _resolve(builder)
    return Registry(specs, builder.broken, pm)


def _one_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".splitlines()[0]


def _check_hook_names(pm: pluggy.PluginManager, origins: dict[str, str | None]) -> None:
    known = {info.hook for info in KINDS.values()}
    for plugin_name, plugin in pm.list_name_plugin():
        for attr in dir(plugin):
            if not attr.startswith(f"{hookspecs.PROJECT_NAME}_") or attr in known:
                continue
            if not callable(getattr(plugin, attr, None)):
                continue
            close = difflib.get_close_matches(attr, sorted(known), n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            dist = origins.get(plugin_name)
            raise PluginLoadError(
                f"Plugin {plugin_name!r} (distribution {dist or 'unknown'}) implements "
                f"{attr!r}, which is not a flowkit hook.{hint} Known hooks: "
                f"{', '.join(sorted(known))}. Fix the name in the plugin, or block it with "
                f"{BLOCK_ENV}={plugin_name}."
            )
    pm.check_pending()


def _run_hook(impl: Any, kind: str, distribution: str | None, builder: _Builder) -> None:
    plugin_name = impl.plugin_name
    staged: list[ComponentSpec] = []

    def register(
        name: str,
        factory: Callable[..., Any],
        *,
        aliases: Sequence[str] = (),
        replaces: str | None = None,
    ) -> None:
        label = kind_info(kind).label
        for n in (name, *aliases):
            if not isinstance(n, str) or not _NAME_RE.match(n):
                raise ValueError(
                    f"invalid {label} name {n!r}: names are lower_snake "
                    "(letters, digits, underscores; dots separate namespaces)"
                )
        if not callable(factory):
            raise TypeError(f"factory for {label} {name!r} is not callable: {factory!r}")
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
    except Exception as exc:
        builder.broken.append(
            BrokenPlugin(
                plugin_name,
                distribution,
                f"raised in {impl.function.__name__}: {_one_line(exc)}",
                traceback.format_exc(),
            )
        )
        return
    for spec in staged:
        builder.counter += 1
        builder.registrations.setdefault(kind, []).append(_Registration(spec, builder.counter))


def _origin(spec: ComponentSpec) -> str:
    return f"plugin {spec.plugin!r} (distribution {spec.distribution or 'unknown'})"


def _resolve(builder: _Builder) -> list[ComponentSpec]:
    """Apply ``replaces=`` and detect clashes between names and aliases."""
    result: list[ComponentSpec] = []
    for kind, regs in builder.registrations.items():
        label = kind_info(kind).label
        specs = [r.spec for r in sorted(regs, key=lambda r: r.order)]
        replacers: dict[str, list[ComponentSpec]] = {}
        for spec in specs:
            if spec.replaces is not None:
                replacers.setdefault(spec.replaces, []).append(spec)
        dropped: set[int] = set()
        for target, candidates in replacers.items():
            if len(candidates) > 1:
                first, second = candidates[:2]
                raise PluginConflictError(
                    f"Two plugins replace the {label} {target!r}: {_origin(first)} and "
                    f"{_origin(second)}. Block one with {BLOCK_ENV}={second.plugin}."
                )
            (replacer,) = candidates
            victims = [s for s in specs if s is not replacer and target in (s.name, *s.aliases)]
            if not victims:
                builder.broken.append(
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
        owners: dict[str, ComponentSpec] = {}
        for spec in specs:
            if id(spec) in dropped:
                continue
            if spec.replaces is not None and spec.replaces != spec.name:
                aliases = tuple(dict.fromkeys((*spec.aliases, spec.replaces)))
                spec = replace(spec, aliases=aliases)
            for n in dict.fromkeys((spec.name, *spec.aliases)):
                if n in owners:
                    first = owners[n]
                    raise PluginConflictError(
                        f"The {label} name {n!r} is registered twice: by {_origin(first)} and by "
                        f"{_origin(spec)}. Nothing is renamed silently: block one plugin with "
                        f"{BLOCK_ENV}={spec.plugin} (or {first.plugin}), or have the newer one "
                        f"declare register({spec.name!r}, ..., replaces={n!r})."
                    )
                owners[n] = spec
            result.append(spec)
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
