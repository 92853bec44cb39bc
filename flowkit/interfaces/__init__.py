"""One abstract base per kind of component; each carries its documented contract.

SDEs (:class:`SDE`) and SDE integrators (:class:`SDEIntegrator`) serve the
score-based models of :mod:`flowkit.sde`. Integrators have two option bases
(:class:`AdaptiveIntegrator`, :class:`FixedStepIntegrator`) and optional
gradient-path protocols (:mod:`flowkit.interfaces.gradient_paths`).
"""

from flowkit.interfaces.adaptive_integrator import AdaptiveIntegrator
from flowkit.interfaces.fixed_step_integrator import FixedStepIntegrator
from flowkit.interfaces.gradient_paths import (
    GRADIENT_PATHS,
    SupportsCheckpointing,
    SupportsNativeAdjoint,
    SupportsReversibleSolve,
    missing_gradient_paths,
)
from flowkit.interfaces.gradient_strategy import GradientStrategy
from flowkit.interfaces.integrator import Integrator
from flowkit.interfaces.objective import Objective, ObjectiveResult
from flowkit.interfaces.regularizer import Regularizer
from flowkit.interfaces.sde import SDE, GaussianPrior
from flowkit.interfaces.sde_integrator import BrownianMotion, SDEIntegrator
from flowkit.interfaces.trace_estimator import TraceEstimator
from flowkit.interfaces.vector_field import VectorField

__all__ = [
    "GRADIENT_PATHS",
    "SDE",
    "AdaptiveIntegrator",
    "BrownianMotion",
    "FixedStepIntegrator",
    "GaussianPrior",
    "GradientStrategy",
    "Integrator",
    "Objective",
    "ObjectiveResult",
    "Regularizer",
    "SDEIntegrator",
    "SupportsCheckpointing",
    "SupportsNativeAdjoint",
    "SupportsReversibleSolve",
    "TraceEstimator",
    "VectorField",
    "missing_gradient_paths",
]
