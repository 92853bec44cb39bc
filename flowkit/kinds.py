"""The kinds of component: their names, hooks, base classes and capabilities.

It also says what a plugin may register as a factory of each kind
(:func:`factory_problem`) and what a factory must build
(:func:`component_problem`):

* A **class** must subclass the kind's abstract base from
  :mod:`flowkit.interfaces` and implement all its abstract methods. For
  vector fields any ``nn.Module`` subclass is accepted, since any module with
  ``forward(t, x)`` is accepted as a field at use time (it then counts as a
  field without a closed-form divergence); its ``forward`` must take ``t`` and
  ``x`` positionally. Subclassing :class:`~flowkit.interfaces.VectorField` is
  how a field declares capabilities.
* An **instance** is refused: the registry calls the factory with the
  component's options, so a plugin registers the class (or a function that
  builds the component), never a ready-made object.
* Any other **callable** (a function, a ``functools.partial``) is accepted; what
  it builds is checked by :func:`component_problem` when it is first created,
  and its capabilities are read from its own attributes.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

from torch import nn

from flowkit.interfaces import (
    SDE,
    GradientStrategy,
    Integrator,
    Objective,
    Regularizer,
    SDEIntegrator,
    TraceEstimator,
    VectorField,
)

__all__ = [
    "COMBINATION_KINDS",
    "KINDS",
    "KindInfo",
    "capabilities_of",
    "component_problem",
    "factory_problem",
    "kind_info",
]


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
        KindInfo("objective", "flowkit_register_objectives", Objective, "objective"),
        KindInfo("sde", "flowkit_register_sdes", SDE, "SDE"),
        KindInfo(
            "sde_integrator", "flowkit_register_sde_integrators", SDEIntegrator, "SDE integrator"
        ),
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


def _qualname(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"


def _forward_problem(cls: type) -> str | None:
    """Why ``cls.forward`` cannot be called as ``forward(t, x)``, or ``None``."""
    if getattr(cls, "forward", None) is getattr(nn.Module, "forward", None):
        return "it does not define forward(t, x)"
    try:
        signature = inspect.signature(cls.forward)
    except (TypeError, ValueError):  # pragma: no cover - builtins without a signature
        return None
    try:
        signature.bind(None, None, None)  # self, t, x
    except TypeError:
        return f"its forward{signature} cannot be called as forward(t, x)"
    return None


def factory_problem(factory: Any, kind: str) -> str | None:
    """Why ``factory`` cannot be registered as a ``kind`` factory, or ``None`` if it can.

    See the module docstring for the rules.
    """
    info = kind_info(kind)
    base = f"flowkit.interfaces.{info.base.__name__}"
    if isinstance(factory, type):
        if kind == "vector_field":
            if not issubclass(factory, nn.Module):
                return (
                    f"{_qualname(factory)} is not an nn.Module; a vector field class must "
                    f"subclass {base} (or at least torch.nn.Module with forward(t, x))"
                )
            problem = _forward_problem(factory)
            if problem is not None:
                return f"{_qualname(factory)} is not a vector field: {problem}"
        elif not issubclass(factory, info.base):
            return f"{_qualname(factory)} does not subclass {base}; make it a subclass of {base}"
        if inspect.isabstract(factory):
            missing = ", ".join(sorted(getattr(factory, "__abstractmethods__", ())))
            return f"{_qualname(factory)} leaves abstract method(s) unimplemented: {missing}"
        return None
    if isinstance(factory, info.base) or (
        kind == "vector_field" and isinstance(factory, nn.Module)
    ):
        return (
            f"{factory!r} is an instance; the registry builds components by calling the "
            f"factory with their options, so register its class {_qualname(type(factory))} "
            "(or a function that builds it)"
        )
    if not callable(factory):
        return f"{factory!r} is not callable; register a subclass of {base}"
    return None


def component_problem(component: Any, kind: str) -> str | None:
    """Why ``component`` (what a factory built) is not a ``kind``, or ``None`` if it is."""
    info = kind_info(kind)
    if kind == "vector_field":
        if not isinstance(component, nn.Module):
            return f"it built a {type(component).__qualname__}, which is not an nn.Module"
        return _forward_problem(type(component))
    if not isinstance(component, info.base):
        return (
            f"it built a {type(component).__qualname__}, which is not a "
            f"flowkit.interfaces.{info.base.__name__}"
        )
    return None
