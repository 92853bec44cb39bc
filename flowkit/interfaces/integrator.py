"""The integrator contract: solving ``dy/dt = g(t, y)`` between given times.

:class:`Integrator` holds only :meth:`~Integrator.integrate` and the declared
capabilities. Options live in the two option bases
(:class:`~flowkit.interfaces.AdaptiveIntegrator`,
:class:`~flowkit.interfaces.FixedStepIntegrator`); special gradient paths are
optional protocols (:mod:`flowkit.interfaces.gradient_paths`) that a backend's
integrator implements when it declares the matching capability.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

from torch import Tensor

from flowkit.solution import Solution
from flowkit.state import Dynamics, State

__all__ = ["Integrator"]


class Integrator(ABC):
    """An ODE solver for ``dy/dt = g(t, y)``.

    Contract:
        * Options (tolerances, step size, budgets) are keyword arguments of the
          constructor; an unknown option is a ``TypeError``. Adaptive
          integrators declare theirs by deriving from
          :class:`~flowkit.interfaces.AdaptiveIntegrator`, fixed-step ones from
          :class:`~flowkit.interfaces.FixedStepIntegrator`.
        * :meth:`integrate` takes the right-hand side ``func(t, y)``, an initial
          state ``y0`` (a tensor or a tuple of tensors) and a 1-D tensor ``t`` of
          at least two strictly monotone times (increasing, or decreasing to
          integrate backward in time), with ``y0`` the state at ``t[0]``. It
          returns a :class:`~flowkit.solution.Solution` with the states at every
          time of ``t`` stacked along a new first axis, and statistics (function
          evaluations, accepted and rejected steps, final step size).
        * Accuracy at intermediate output times is that of the method: a solver
          interpolates densely where it can, otherwise steps to the times.
        * Failures raise, never loop forever: step size below ``min_step`` or
          round-off raises :class:`~flowkit.errors.StepSizeUnderflowError`; an
          exhausted ``max_steps`` raises
          :class:`~flowkit.errors.MaxStepsExceededError` (or returns a partial
          solution with ``stats.status == "max_steps_reached"`` when asked);
          NaN or Inf raises :class:`~flowkit.errors.NonFiniteStateError`. Each
          error names the time reached.
        * Gradients: operations are differentiable (the ``backprop`` strategy
          relies on it); the integrator itself never detaches.

    Capabilities (class attributes):
        order: the order of the method (of the propagated solution for
            embedded pairs).
        adaptive: whether it controls its step size from an error estimate.
        reversible: whether it implements
            :class:`~flowkit.interfaces.SupportsReversibleSolve`, an
            algebraically reversible solve with exact memory-free gradients.
        native_adjoint: whether it implements
            :class:`~flowkit.interfaces.SupportsNativeAdjoint`, the backend's
            own adjoint method.
        checkpointable: whether it implements
            :class:`~flowkit.interfaces.SupportsCheckpointing`, recomputing
            each step's internals in the backward pass.

    The flags are the single source for
    :func:`~flowkit.compat.check_compatibility`. A class declaring a
    gradient-path capability must implement its protocol: the conformance kit
    checks it (:func:`~flowkit.interfaces.gradient_paths.missing_gradient_paths`),
    and the strategy refuses to run a path that is missing.
    """

    order: ClassVar[int] = 1
    adaptive: ClassVar[bool] = False
    reversible: ClassVar[bool] = False
    native_adjoint: ClassVar[bool] = False
    checkpointable: ClassVar[bool] = False
    capability_names: ClassVar[tuple[str, ...]] = (
        "order",
        "adaptive",
        "reversible",
        "native_adjoint",
        "checkpointable",
    )

    @abstractmethod
    def integrate(self, func: Dynamics, y0: State, t: Tensor) -> Solution:
        """Solve from ``t[0]`` through every time of ``t``; see the class contract."""
