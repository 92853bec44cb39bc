"""The :class:`Registry`: components by kind and name, options checked, combinations judged."""

from __future__ import annotations

import difflib
import itertools
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import pluggy

from flowkit.compat import check_compatibility
from flowkit.errors import PluginLoadError, UnknownComponentError
from flowkit.kinds import COMBINATION_KINDS, KINDS, component_problem, kind_info
from flowkit.registry.sources import BLOCK_ENV
from flowkit.registry.specs import (
    BrokenPlugin,
    Combination,
    ComponentSpec,
    NameConflict,
    keyword_parameters,
    origin_of,
)

__all__ = ["REGISTRY_OPTION", "Registry"]

REGISTRY_OPTION = "registry"
"""The option (and attribute) through which a component receives the registry
that resolves the names it holds."""

_ABSENT = object()


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

        A factory that takes a ``registry`` keyword (a component that resolves
        further names itself, such as the adjoint's ``backward_integrator``) is
        given this registry, unless the options name one.

        Raises:
            UnknownComponentError: for an unknown name.
            PluginConflictError: for a name several plugins registered.
            TypeError: for an option the component does not take, naming the
                valid ones.
            PluginLoadError: the plugin's factory built something that is not
                a component of ``kind``.
        """
        spec = self.get(kind, name)
        valid = keyword_parameters(spec.factory)
        if valid is not None:
            unknown = sorted(set(options) - valid)
            if unknown:
                raise TypeError(
                    f"Unknown option(s) {', '.join(repr(u) for u in unknown)} for "
                    f"{kind_info(kind).label} {spec.name!r}. Valid options: "
                    f"{', '.join(sorted(valid)) or '(none)'}."
                )
            if REGISTRY_OPTION in valid and options.get(REGISTRY_OPTION) is None:
                options[REGISTRY_OPTION] = self
        component = spec.factory(**options)
        problem = component_problem(component, kind)
        if problem is not None:
            raise PluginLoadError(
                f"The {kind_info(kind).label} {spec.name!r} of {origin_of(spec)} is broken: its "
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

        An instance with a ``registry`` attribute left at ``None`` (one that
        resolves further names itself) is given this registry, so that the
        registry of the entry point it was passed to is honoured throughout.

        Raises:
            TypeError: if options are given together with an instance.
        """
        if isinstance(component, str):
            return self.create(kind, component, **(options or {}))
        if getattr(component, REGISTRY_OPTION, _ABSENT) is None:
            setattr(component, REGISTRY_OPTION, self)
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
