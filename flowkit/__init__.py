"""flowkit: a solver-agnostic plugin framework for continuous normalizing flows.

The public names are re-exported here; plugins use :data:`hookimpl` and the
hooks documented in :mod:`flowkit.hookspecs`. Importing flowkit loads no
plugin: the registry is built on first use (:func:`get_registry`).
"""

from typing import Any

from flowkit._version import __version__
from flowkit.adapters import as_field
from flowkit.cnf import CNF, CNFSequence, compose
from flowkit.compat import Compatibility, check_compatibility, ensure_compatible
from flowkit.errors import (
    FlowkitError,
    IncompatibleComponentsError,
    IntegrationError,
    InvalidInputError,
    MaxStepsExceededError,
    NonFiniteStateError,
    PluginConflictError,
    PluginLoadError,
    StepSizeUnderflowError,
    UnknownComponentError,
)
from flowkit.hookspecs import ENTRY_POINT_GROUP, PROJECT_NAME, hookimpl, hookspec
from flowkit.interfaces import (
    GradientStrategy,
    Integrator,
    Regularizer,
    TraceEstimator,
    VectorField,
)
from flowkit.odeint import odeint, odeint_solution
from flowkit.odeint_adjoint import odeint_adjoint
from flowkit.odeint_event import EventNotFoundError, odeint_event
from flowkit.registry import ComponentSpec, Registry, build_registry, get_registry, reset_registry
from flowkit.solution import Solution, SolverStats

__all__ = [
    "CNF",
    "CNFSequence",
    "ENTRY_POINT_GROUP",
    "EventNotFoundError",
    "PROJECT_NAME",
    "Compatibility",
    "ComponentSpec",
    "FlowkitError",
    "GradientStrategy",
    "IncompatibleComponentsError",
    "IntegrationError",
    "Integrator",
    "InvalidInputError",
    "MaxStepsExceededError",
    "NonFiniteStateError",
    "PluginConflictError",
    "Perturb",
    "PluginLoadError",
    "Registry",
    "Regularizer",
    "Solution",
    "SolverStats",
    "StepSizeUnderflowError",
    "TraceEstimator",
    "UnknownComponentError",
    "VectorField",
    "__version__",
    "as_field",
    "build_registry",
    "check_compatibility",
    "compose",
    "ensure_compatible",
    "get_registry",
    "hookimpl",
    "hookspec",
    "load",
    "odeint",
    "odeint_adjoint",
    "odeint_event",
    "odeint_solution",
    "reset_registry",
]


def __getattr__(name: str) -> Any:
    """``flowkit.load`` (:func:`flowkit.train.saved.load`) and ``flowkit.Perturb``, on first use.

    Loading a run needs the training package (plots, progress bars), and
    ``Perturb`` is torchdiffeq's own enum; a plain ``import flowkit`` should
    pay for neither.
    """
    if name == "Perturb":
        from flowkit.odeint_options import perturb_enum

        return perturb_enum()
    if name == "load":
        from flowkit.train.saved import load

        return load
    raise AttributeError(f"module 'flowkit' has no attribute {name!r}")
