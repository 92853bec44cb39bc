"""Native explicit Runge-Kutta machinery: tableaus, one stepper, step control, loops.

A new method is a :class:`ButcherTableau` and a subclass of
:class:`FixedStepRungeKutta` or :class:`AdaptiveRungeKutta` setting
``tableau`` and ``order`` (or one call of :func:`runge_kutta_class`); see
:mod:`flowkit.rk.methods` and ``examples/rk_method_plugin.py``.
"""

from flowkit.rk.adaptive import AdaptiveRungeKutta
from flowkit.rk.control import PIController, Tolerance, initial_step, mixed_rms_norm, rms_norm
from flowkit.rk.factory import runge_kutta_class
from flowkit.rk.fixed_step import FixedStepRungeKutta
from flowkit.rk.solver import RungeKuttaIntegrator
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
    "runge_kutta_class",
]
