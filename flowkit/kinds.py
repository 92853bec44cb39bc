"""The kinds of component: their names, hooks, base classes and capabilities."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flowkit.interfaces import (
    GradientStrategy,
    Integrator,
    Regularizer,
    TraceEstimator,
    VectorField,
)

__all__ = ["COMBINATION_KINDS", "KINDS", "KindInfo", "capabilities_of", "kind_info"]


@dataclass(frozen=True)
class KindInfo:
    """What the registry knows about one kind of component."""

    name: str
    hook: str
    base: type
    label: str

    @property
    def capability_names(self) -> tuple[str, ...]:
        """The class attributes that declare this kind's capabilities."""
        return self.base.capability_names  # type: ignore[attr-defined, no-any-return]


KINDS: dict[str, KindInfo] = {
    info.name: info
    for info in (
        KindInfo("vector_field", "flowkit_register_vector_fields", VectorField, "vector field"),
        KindInfo("integrator", "flowkit_register_integrators", Integrator, "integrator"),
        KindInfo(
            "trace_estimator",
            "flowkit_register_trace_estimators",
            TraceEstimator,
            "trace estimator",
        ),
        KindInfo(
            "gradient_strategy",
            "flowkit_register_gradient_strategies",
            GradientStrategy,
            "gradient strategy",
        ),
        KindInfo("regularizer", "flowkit_register_regularizers", Regularizer, "regularizer"),
    )
}
"""Every kind, keyed by its lower_snake name."""

COMBINATION_KINDS: tuple[str, ...] = (
    "vector_field",
    "integrator",
    "trace_estimator",
    "gradient_strategy",
)
"""The kinds whose choices make up one CNF combination, in order."""


def kind_info(kind: str) -> KindInfo:
    """Look up a kind by name; raises ``ValueError`` listing the valid kinds."""
    try:
        return KINDS[kind]
    except KeyError:
        raise ValueError(f"Unknown kind {kind!r}; valid kinds: {', '.join(KINDS)}.") from None


def capabilities_of(component: Any, kind: str) -> dict[str, Any]:
    """The declared capabilities of a class, instance or other factory.

    Attributes the component does not define take the base class's defaults,
    so any ``nn.Module`` with ``forward(t, x)`` counts as a field without a
    closed-form divergence.
    """
    info = kind_info(kind)
    caps = {}
    for attr in info.capability_names:
        default = getattr(info.base, attr)
        caps[attr] = getattr(component, attr, default)
    return caps
