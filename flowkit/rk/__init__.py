"""Native explicit Runge-Kutta machinery: tableaus, one stepper, step control, loops.

A new method is a :class:`ButcherTableau` and a subclass of
:class:`FixedStepRungeKutta` or :class:`AdaptiveRungeKutta` setting
``tableau`` and ``order``; see ``plugins/native_integrators.py``.
"""

from flowkit.rk.control import PIController, Tolerance, initial_step, mixed_rms_norm, rms_norm
from flowkit.rk.solver import AdaptiveRungeKutta, FixedStepRungeKutta, RungeKuttaIntegrator
from flowkit.rk.stepper import StepResult, dense_state, rk_step
from flowkit.rk.tableau import ButcherTableau, dense_from_hermite_quartic

__all__ = [
    "AdaptiveRungeKutta",
    "ButcherTableau",
    "FixedStepRungeKutta",
    "PIController",
    "RungeKuttaIntegrator",
    "StepResult",
    "Tolerance",
    "dense_from_hermite_quartic",
    "dense_state",
    "initial_step",
    "mixed_rms_norm",
    "rk_step",
    "rms_norm",
]
