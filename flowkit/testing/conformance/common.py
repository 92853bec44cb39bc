"""What every checker shares: the error, building the component under test, comparing."""

from __future__ import annotations

from typing import Any

from flowkit.registry import ComponentSpec, Registry, get_registry
from flowkit.state import as_tuple

__all__ = [
    "ConformanceError",
    "ConformanceTarget",
    "accepted_options",
    "build_target",
    "max_error",
    "target_label",
]

ConformanceTarget = str | type | Any


class ConformanceError(AssertionError):
    """A component broke a property of its kind's contract.

    Attributes:
        property: the name of the broken property (e.g. ``"convergence order"``).
    """

    def __init__(self, component: str, prop: str, detail: str) -> None:
        super().__init__(f"{component} breaks '{prop}': {detail}")
        self.property = prop


def build_target(
    kind: str, target: ConformanceTarget, options: dict[str, Any], registry: Registry | None
) -> Any:
    """The component under test: created by registered name or class, or the instance itself.

    Raises:
        TypeError: options given together with an instance.
    """
    if isinstance(target, str):
        return (registry or get_registry()).create(kind, target, **options)
    if isinstance(target, type):
        return target(**options)
    if options:
        raise TypeError("options cannot be given with an instance; configure the instance")
    return target


def target_label(target: ConformanceTarget) -> str:
    """How error messages name the component: its registered name or its class."""
    if isinstance(target, str):
        return repr(target)
    cls = target if isinstance(target, type) else type(target)
    return cls.__name__


def accepted_options(factory: Any) -> set[str] | None:
    """The option names the registry validates for ``factory`` (``None``: any)."""
    cls = factory if isinstance(factory, type) else type(factory)
    names = ComponentSpec(kind="integrator", name=cls.__name__, factory=cls).options()
    return None if names is None else set(names)


def max_error(a: Any, b: Any) -> float:
    """The largest absolute difference between two tensors or tuples of tensors."""
    pairs = zip(as_tuple(a), as_tuple(b), strict=True)
    return max(float((x.detach() - y.detach()).abs().max()) for x, y in pairs)
