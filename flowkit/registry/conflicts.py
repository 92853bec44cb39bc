"""Resolving ``replaces=`` and withholding the names several plugins registered."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from flowkit.kinds import kind_info
from flowkit.registry.hooks import Builder
from flowkit.registry.sources import BLOCK_ENV
from flowkit.registry.specs import BrokenPlugin, ComponentSpec, NameConflict, origin_of

__all__ = ["resolve_registrations"]


def _listing(items: Sequence[str]) -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


def _clash_message(label: str, name: str, claimants: Sequence[ComponentSpec]) -> str:
    first, *later = claimants
    times = "twice" if len(claimants) == 2 else f"{len(claimants)} times"
    newer = later[-1]
    return (
        f"The {label} name {name!r} is registered {times}: "
        f"{_listing([f'by {origin_of(s)}' for s in claimants])}. Nothing is renamed silently, "
        f"so {name!r} cannot be used until one plugin gives way: block one with "
        f"{BLOCK_ENV}={','.join(dict.fromkeys(s.plugin for s in later))} "
        f"(or {first.plugin}), or have the newer one declare "
        f"register({newer.name!r}, ..., replaces={name!r})."
    )


def resolve_registrations(builder: Builder) -> list[ComponentSpec]:
    """Apply ``replaces=`` and withhold the names several plugins registered.

    Returns the usable specs; records each clash in ``builder.conflicts`` and
    every plugin at fault in ``builder.broken``.
    """
    result: list[ComponentSpec] = []
    for kind, regs in builder.registrations.items():
        label = kind_info(kind).label
        specs = list(regs)
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
                    f"{_listing([origin_of(c) for c in candidates])}, so {target!r} cannot be used "
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
