"""Choosing what to benchmark: component names or glob patterns per kind.

Patterns are matched against the registry's canonical names and aliases
(``fnmatch`` rules: ``*``, ``?``, ``[...]``), so a newly installed plugin is
benchmarked without editing anything. Combinations are judged by the one
compatibility function, :func:`flowkit.compat.check_compatibility`.
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass, field

from flowkit.errors import FlowkitError
from flowkit.kinds import COMBINATION_KINDS, kind_info
from flowkit.registry import Combination, Registry

__all__ = [
    "BenchSelectionError",
    "Selection",
    "SelectionResult",
    "expand_patterns",
    "parse_patterns",
    "select_combinations",
    "select_objectives",
]

_GLOB_CHARS = frozenset("*?[")
_OPTION_OF_KIND = {
    "vector_field": "--fields",
    "integrator": "--integrators",
    "trace_estimator": "--traces",
    "gradient_strategy": "--gradients",
    "objective": "--objectives",
}


class BenchSelectionError(FlowkitError, ValueError):
    """A benchmark selection that matches nothing or only incompatible combinations."""


def parse_patterns(text: str | Sequence[str] | None) -> tuple[str, ...] | None:
    """Split ``"dopri5, rk4"`` (or a list of such strings) into patterns.

    Returns ``None`` for ``None`` (meaning: the suite's default choice).

    Raises:
        BenchSelectionError: for an empty selection such as ``""``.
    """
    if text is None:
        return None
    parts = [text] if isinstance(text, str) else list(text)
    patterns = tuple(p.strip() for part in parts for p in part.split(",") if p.strip())
    if not patterns:
        raise BenchSelectionError(
            f"Empty selection {text!r}: give names or glob patterns such as 'dopri5,rk4' or '*'."
        )
    return patterns


def _is_glob(pattern: str) -> bool:
    return any(c in _GLOB_CHARS for c in pattern)


def expand_patterns(registry: Registry, kind: str, patterns: Sequence[str]) -> list[str]:
    """The canonical names of ``kind`` matched by ``patterns``, in registry order.

    A plain name (no glob characters) must name a registered component or
    alias; a glob must match at least one.

    Raises:
        BenchSelectionError: naming the pattern that matched nothing, what
            exists, and the option to fix.
    """
    info = kind_info(kind)
    names = registry.names(kind)
    matched: set[str] = set()
    for pattern in patterns:
        key = pattern.strip().lower().replace("-", "_")
        if _is_glob(key):
            hits = {
                spec.name
                for spec in registry.specs(kind)
                if any(fnmatch.fnmatchcase(n, key) for n in (spec.name, *spec.aliases))
            }
        else:
            hits = {registry.get(kind, key).name} if (kind, key) in registry else set()
        if not hits:
            raise BenchSelectionError(
                f"No {info.label} matches {pattern!r} (option {_OPTION_OF_KIND.get(kind, kind)})."
                f"{_did_you_mean(registry, kind, key)} "
                f"Available: {', '.join(names) or '(none installed)'}. "
                "Use names or glob patterns such as 'torchdiffeq.*'; `flowkit list` shows all."
            )
        matched |= hits
    return [n for n in names if n in matched]


def _did_you_mean(registry: Registry, kind: str, key: str) -> str:
    """`` Did you mean 'x'?`` for the closest registered name or alias, or ``""``."""
    known = [n for spec in registry.specs(kind) for n in (spec.name, *spec.aliases)]
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    return f" Did you mean {close[0]!r}?" if close else ""


@dataclass(frozen=True)
class Selection:
    """Patterns per kind; ``None`` leaves the choice to each suite's default."""

    fields: tuple[str, ...] | None = None
    integrators: tuple[str, ...] | None = None
    traces: tuple[str, ...] | None = None
    gradients: tuple[str, ...] | None = None
    objectives: tuple[str, ...] | None = None

    def patterns(self, kind: str) -> tuple[str, ...] | None:
        """The patterns given for ``kind`` (``None`` if not given)."""
        return {
            "vector_field": self.fields,
            "integrator": self.integrators,
            "trace_estimator": self.traces,
            "gradient_strategy": self.gradients,
            "objective": self.objectives,
        }[kind]

    def as_dict(self) -> dict[str, list[str] | None]:
        """JSON form, as recorded in the report's settings."""
        return {
            k: (list(v) if v is not None else None)
            for k, v in (
                ("fields", self.fields),
                ("integrators", self.integrators),
                ("traces", self.traces),
                ("gradients", self.gradients),
                ("objectives", self.objectives),
            )
        }


@dataclass
class SelectionResult:
    """The compatible combinations and the ones left out, with reasons."""

    combinations: list[Combination]
    excluded: list[tuple[str, str]] = field(default_factory=list)


def select_combinations(
    registry: Registry,
    selection: Selection,
    defaults: dict[str, Sequence[str]],
    *,
    restrict: dict[str, Sequence[str]] | None = None,
) -> SelectionResult:
    """Expand ``selection`` (falling back to ``defaults``) into compatible combinations.

    Arguments:
        registry: where names are resolved.
        selection: the user's patterns.
        defaults: patterns per kind used where the selection gives none.
        restrict: names per kind a suite can run at all (e.g. fields with a
            closed form); selected names outside it are excluded with a reason.

    Returns:
        The compatible combinations, and ``(id, reason)`` for the excluded ones.

    Raises:
        BenchSelectionError: when a pattern matches nothing, when an explicitly
            named component fits none of the selected partners (the message
            carries the compatibility function's reasons), or when nothing
            compatible remains.
    """
    chosen: dict[str, list[str]] = {}
    explicit: dict[str, set[str]] = {}
    excluded: list[tuple[str, str]] = []
    for kind in COMBINATION_KINDS:
        given = selection.patterns(kind)
        patterns = given if given is not None else tuple(defaults.get(kind, ("*",)))
        names = expand_patterns(registry, kind, patterns)
        if given is not None:
            explicit[kind] = {
                registry.get(kind, p).name
                for p in given
                if not _is_glob(p) and (kind, p.strip().lower().replace("-", "_")) in registry
            }
        allowed = (restrict or {}).get(kind)
        if allowed is not None:
            for n in names:
                if n not in allowed:
                    excluded.append((n, f"{kind_info(kind).label} not usable in this suite"))
            names = [n for n in names if n in allowed]
            if not names:
                raise BenchSelectionError(
                    f"None of the selected {kind_info(kind).label}s can run in this suite; it "
                    f"supports {', '.join(allowed)}. Change {_OPTION_OF_KIND[kind]}."
                )
        chosen[kind] = names
        if kind in explicit:
            explicit[kind] &= set(names)  # a name the suite cannot use is excluded, not an error
    every = list(
        registry.combinations(
            fields=chosen["vector_field"],
            integrators=chosen["integrator"],
            traces=chosen["trace_estimator"],
            gradients=chosen["gradient_strategy"],
            valid=None,
        )
    )
    good = [c for c in every if c.compatibility.ok]
    bad = [c for c in every if not c.compatibility.ok]
    specs_of = {
        "vector_field": lambda c: c.field,
        "integrator": lambda c: c.integrator,
        "trace_estimator": lambda c: c.trace,
        "gradient_strategy": lambda c: c.gradient,
    }
    for kind, names in explicit.items():
        for name in names:
            if not any(specs_of[kind](c).name == name for c in good):
                reasons = sorted(
                    {
                        r
                        for c in bad
                        if specs_of[kind](c).name == name
                        for r in c.compatibility.reasons
                    }
                )
                raise BenchSelectionError(
                    f"The {kind_info(kind).label} {name!r} is incompatible with every selected "
                    f"partner: {'; '.join(reasons) or 'no partner selected'}. Select a compatible "
                    "component, or drop it from the selection."
                )
    if not good:
        reasons = sorted({r for c in bad for r in c.compatibility.reasons})
        raise BenchSelectionError(
            "No compatible combination in the selection: "
            + ("; ".join(reasons) or "nothing was selected")
            + ". Widen the selection, e.g. --traces '*'."
        )
    excluded.extend((c.id, "; ".join(c.compatibility.reasons)) for c in bad)
    return SelectionResult(good, excluded)


def select_objectives(
    registry: Registry, selection: Selection, defaults: Sequence[str]
) -> list[str]:
    """The canonical objective names selected (``defaults`` where none are given).

    Only registered objectives are benchmarked: a schedule of objectives (such
    as flow matching, then maximum likelihood) is measured by
    ``benchmarks/objectives.py``.

    Raises:
        BenchSelectionError: when a name or pattern matches no registered
            objective (with the closest name, and what exists).
    """
    given = selection.patterns("objective")
    return expand_patterns(registry, "objective", given if given is not None else defaults)
