"""Choosing which component combinations a test run covers.

The full product of fields x integrators x trace estimators x gradient
strategies grows fast. :func:`pairwise_cover` picks a subset in which every
compatible pair of components of two different kinds appears together at least
once (all-pairs testing), so a component that misbehaves with another one is
still caught; the ``nightly`` profile runs the full product.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence

from flowkit.registry import Combination, Registry, get_registry

__all__ = ["pairs_of", "pairwise_cover", "select_combinations", "FULL_PRODUCT_PROFILES"]

FULL_PRODUCT_PROFILES = frozenset({"nightly"})
"""Hypothesis profiles under which the suite runs every valid combination."""


def pairs_of(combo: Combination) -> set[tuple[str, str, str, str]]:
    """The (kind, name, kind, name) pairs a combination exercises."""
    members = (
        ("vector_field", combo.field.name),
        ("integrator", combo.integrator.name),
        ("trace_estimator", combo.trace.name),
        ("gradient_strategy", combo.gradient.name),
    )
    return {(a[0], a[1], b[0], b[1]) for a, b in itertools.combinations(members, 2)}


def pairwise_cover(combos: Sequence[Combination]) -> list[Combination]:
    """A small subset of ``combos`` covering every pair that ``combos`` covers.

    Greedy: repeatedly take the combination adding the most uncovered pairs
    (ties broken by the order given, so the result is deterministic).
    """
    pair_sets = [pairs_of(c) for c in combos]
    uncovered = set().union(*pair_sets) if pair_sets else set()
    chosen: list[Combination] = []
    while uncovered:
        best = max(range(len(combos)), key=lambda i: (len(pair_sets[i] & uncovered), -i))
        gain = pair_sets[best] & uncovered
        if not gain:  # pragma: no cover - every remaining pair belongs to some combo
            break
        chosen.append(combos[best])
        uncovered -= gain
    return chosen


def select_combinations(
    profile: str, registry: Registry | None = None, *, valid: bool = True
) -> list[Combination]:
    """The combinations a test run with hypothesis ``profile`` covers.

    Valid ones: the full product under ``nightly``, else a pairwise cover.
    Invalid ones (``valid=False``): every one, always (each only builds and
    raises, which is cheap).
    """
    registry = registry or get_registry()
    combos: Iterable[Combination] = registry.combinations(valid=valid)
    combos = list(combos)
    if not valid or profile in FULL_PRODUCT_PROFILES:
        return combos
    return pairwise_cover(combos)
