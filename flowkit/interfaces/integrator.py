"""The integrator contract: solving ``dy/dt = g(t, y)`` between given times."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import ClassVar

from torch import Tensor

from flowkit.errors import FlowkitError
from flowkit.solution import Solution
from flowkit.state import Dynamics, State

__all__ = ["Integrator"]


class Integrator(ABC):
    """An ODE solver for ``dy/dt = g(t, y)``.

    Contract:
        * Options (tolerances, step size, budgets) are keyword arguments of the
          constructor; an unknown option is a ``TypeError``.
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
        reversible: whether it implements :meth:`integrate_reversible`, an
            algebraically reversible solve with exact memory-free gradients.
        native_adjoint: whether it implements :meth:`integrate_native_adjoint`,
            the backend's own adjoint method.
        checkpointable: whether it implements :meth:`integrate_checkpointed`,
            recomputing each step's internals in the backward pass.
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

    def integrate_checkpointed(
        self, func: Dynamics, y0: State, t: Tensor, params: Sequence[Tensor]
    ) -> Solution:
        """Like :meth:`integrate`, keeping only step states for the backward pass.

        Available when ``checkpointable`` is True. Each step's internals are
        recomputed in the backward pass; the forward pass costs the same
        function evaluations as :meth:`integrate`, and gradients reach ``y0``
        and ``params`` (the tensors ``func`` depends on), equal to those of
        backpropagating through :meth:`integrate` to round-off.
        """
        raise FlowkitError(
            f"{type(self).__name__} does not support step checkpointing "
            "(checkpointable=False); choose the 'backprop' or 'adjoint' gradient strategy."
        )

    def integrate_reversible(
        self, func: Dynamics, y0: State, t: Tensor, params: Sequence[Tensor]
    ) -> Solution:
        """Solve with gradients from the algebraically reversible backward pass.

        Available when ``reversible`` is True. Gradients reach ``y0`` and
        ``params``, the tensors ``func`` depends on.
        """
        raise FlowkitError(
            f"{type(self).__name__} is not reversible (reversible=False); "
            "choose an integrator such as 'torchsde.reversible_heun' or another gradient strategy."
        )

    def integrate_native_adjoint(
        self, func: Dynamics, y0: State, t: Tensor, params: Sequence[Tensor]
    ) -> Solution:
        """Solve with gradients from the backend's own adjoint method.

        Available when ``native_adjoint`` is True.
        """
        raise FlowkitError(
            f"{type(self).__name__} has no native adjoint (native_adjoint=False); "
            "use flowkit's solver-agnostic 'adjoint' strategy instead."
        )
