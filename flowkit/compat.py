"""The one function that decides whether components fit together.

The model constructor, the command line, the benchmarks and the test suite all
ask :func:`check_compatibility`; an incompatible choice raises
:class:`~flowkit.errors.IncompatibleComponentsError` from
:func:`ensure_compatible` with the missing capability named.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flowkit.errors import IncompatibleComponentsError
from flowkit.kinds import capabilities_of

__all__ = ["Compatibility", "check_compatibility", "ensure_compatible", "is_score_field"]


@dataclass(frozen=True)
class Compatibility:
    """The verdict on a combination: ``ok`` and, when not, the reasons."""

    ok: bool
    reasons: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return self.ok


def _describe(component: Any) -> str:
    """A registry spec's name, an instance's registered name, else the class name."""
    for attr in ("name", "registry_name"):
        name = getattr(component, attr, None)
        if isinstance(name, str) and not isinstance(component, type):
            return repr(name)
    cls = component if isinstance(component, type) else type(component)
    return cls.__name__


def _declared(component: Any) -> Any:
    """The object whose attributes declare capabilities (a spec's factory)."""
    factory = getattr(component, "factory", None)
    return factory if factory is not None and hasattr(component, "kind") else component


def is_score_field(field: Any) -> bool:
    """Whether ``field`` (a spec, class or instance) is a probability flow field.

    A field bound to a context (:class:`flowkit.dynamics.BoundContext`) is
    judged by the field inside it.
    """
    from flowkit.sde.probability_flow import ProbabilityFlow

    declared = _declared(field)
    while not isinstance(declared, type) and not isinstance(declared, ProbabilityFlow):
        inner = getattr(declared, "field", None)
        if inner is None or inner is declared:
            break
        declared = inner
    if isinstance(declared, type):
        return issubclass(declared, ProbabilityFlow)
    return isinstance(declared, ProbabilityFlow)


def check_compatibility(
    *,
    field: Any = None,
    integrator: Any = None,
    trace: Any = None,
    gradient: Any = None,
    objective: Any = None,
) -> Compatibility:
    """Decide from declared capabilities whether the given components fit.

    Each argument is a registry :class:`~flowkit.registry.ComponentSpec`, a
    component class or an instance; ``None`` leaves that kind out of the check.

    Rules:
        * a gradient strategy's ``requires`` names integrator capabilities that
          must be true (``reversible``, ``native_adjoint``, ``checkpointable``);
        * a trace estimator with ``requires_divergence`` needs a field with
          ``has_divergence``;
        * an objective with ``requires_trace`` needs a trace estimator: given an
          ``objective``, ``trace=None`` means the model has none;
        * an objective with ``requires_score_model`` (``score_matching``) needs
          a probability flow field (:func:`is_score_field`).

    Example:
        >>> from flowkit.interfaces import Integrator, GradientStrategy
        >>> class Euler(Integrator):
        ...     def integrate(self, func, y0, t): ...
        >>> class Reversible(GradientStrategy):
        ...     requires = ("reversible",)
        ...     def solve(self, integrator, func, y0, t, *, params=None): ...
        >>> verdict = check_compatibility(integrator=Euler, gradient=Reversible)
        >>> verdict.ok
        False
        >>> "requires an integrator with reversible=True" in verdict.reasons[0]
        True
    """
    reasons: list[str] = []
    if gradient is not None and integrator is not None:
        grad_caps = capabilities_of(_declared(gradient), "gradient_strategy")
        int_caps = capabilities_of(_declared(integrator), "integrator")
        for needed in grad_caps["requires"]:
            have = int_caps.get(needed, getattr(_declared(integrator), needed, False))
            if not have:
                reasons.append(
                    f"gradient strategy {_describe(gradient)} requires an integrator with "
                    f"{needed}=True; integrator {_describe(integrator)} declares {needed}={have!r}"
                )
    if trace is not None and field is not None:
        trace_caps = capabilities_of(_declared(trace), "trace_estimator")
        field_caps = capabilities_of(_declared(field), "vector_field")
        if trace_caps["requires_divergence"] and not field_caps["has_divergence"]:
            reasons.append(
                f"trace estimator {_describe(trace)} requires a field with a closed-form "
                f"divergence (has_divergence=True); field {_describe(field)} has none"
            )
    if objective is not None and trace is None:
        if capabilities_of(_declared(objective), "objective")["requires_trace"]:
            reasons.append(
                f"objective {_describe(objective)} requires a trace estimator "
                "(requires_trace=True); the model has none: build the CNF with a trace "
                "estimator such as 'exact' or 'hutchinson'"
            )
    if objective is not None and field is not None:
        needs_score = capabilities_of(_declared(objective), "objective")["requires_score_model"]
        if needs_score and not is_score_field(field):
            reasons.append(
                f"objective {_describe(objective)} trains a score model "
                "(requires_score_model=True); field "
                f"{_describe(field)} is not a probability flow field: build the CNF on the "
                "field 'probability_flow' (--field probability_flow on the command line, "
                "with score_field=... for the network)"
            )
    return Compatibility(ok=not reasons, reasons=tuple(reasons))


def ensure_compatible(
    *,
    field: Any = None,
    integrator: Any = None,
    trace: Any = None,
    gradient: Any = None,
    objective: Any = None,
) -> None:
    """Raise :class:`IncompatibleComponentsError` if the components do not fit."""
    verdict = check_compatibility(
        field=field, integrator=integrator, trace=trace, gradient=gradient, objective=objective
    )
    if not verdict:
        raise IncompatibleComponentsError(
            "Incompatible components: " + "; ".join(verdict.reasons) + ". "
            "Run `flowkit list` to see each component's capabilities."
        )
