"""One abstract base per kind of component; each carries its documented contract."""

from flowkit.interfaces.gradient_strategy import GradientStrategy
from flowkit.interfaces.integrator import Integrator
from flowkit.interfaces.objective import Objective, ObjectiveResult
from flowkit.interfaces.regularizer import Regularizer
from flowkit.interfaces.trace_estimator import TraceEstimator
from flowkit.interfaces.vector_field import VectorField

__all__ = [
    "GradientStrategy",
    "Integrator",
    "Objective",
    "ObjectiveResult",
    "Regularizer",
    "TraceEstimator",
    "VectorField",
]
