"""The shared machinery of the native Runge-Kutta integrators.

:class:`RungeKuttaIntegrator` runs a :class:`~flowkit.rk.tableau.ButcherTableau`
through one of two loops, :class:`~flowkit.rk.fixed_step.FixedStepRungeKutta`
and :class:`~flowkit.rk.adaptive.AdaptiveRungeKutta`; a concrete method is a
subclass that sets ``tableau`` and ``order`` (see :mod:`flowkit.rk.methods`).
Both loops implement the :class:`~flowkit.interfaces.Integrator` contract for
tensor and tuple states, either time direction and several output times, and
both offer the checkpointing gradient path
(:class:`~flowkit.interfaces.SupportsCheckpointing`): :meth:`integrate_checkpointed`
makes each accepted step one autograd node that recomputes the step's internals
in the backward pass (:mod:`flowkit.rk.checkpointed`), with the step sizes
decided on detached values, so its gradients equal those of plain
backpropagation through the same steps, for the same forward function
evaluations.

Output times are reached without degrading accuracy: a method with dense output
(``dopri5``) interpolates with its own continuous extension; every other method
steps exactly onto each output time.

Gradients flow to ``y0`` and to the tensors ``func`` uses, not to ``t``: the
solver handles times as Python floats. Time gradients are added for every
integrator by the one solve path (:func:`flowkit.solve.solve`).
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from typing import ClassVar

import torch
from torch import Tensor

from flowkit.errors import MaxStepsExceededError, NonFiniteStateError
from flowkit.interfaces import Integrator, SupportsCheckpointing
from flowkit.interfaces.step_options import OnMaxSteps
from flowkit.rk.checkpointed import CheckpointedSteps
from flowkit.rk.problem import PlainSteps, Problem
from flowkit.rk.tableau import ButcherTableau
from flowkit.solution import Solution, SolverStats
from flowkit.state import Dynamics, State, all_finite, like

__all__ = ["RungeKuttaIntegrator"]


class RungeKuttaIntegrator(Integrator, SupportsCheckpointing):
    """Shared machinery of the native Runge-Kutta integrators.

    Subclasses set the class attributes ``tableau`` and ``order`` (equal to
    ``tableau.order``).
    """

    tableau: ClassVar[ButcherTableau]
    checkpointable: ClassVar[bool] = True

    def integrate(self, func: Dynamics, y0: State, t: Tensor) -> Solution:
        """Solve through every time of ``t``; see :class:`~flowkit.interfaces.Integrator`.

        Raises:
            StepSizeUnderflowError, MaxStepsExceededError, NonFiniteStateError:
                as described in the integrator contract.
        """
        return self._run(func, y0, t)

    def integrate_checkpointed(
        self, func: Dynamics, y0: State, t: Tensor, params: Sequence[Tensor]
    ) -> Solution:
        """Like :meth:`integrate`, recomputing each step in the backward pass.

        Each accepted step becomes one autograd node that keeps only its input
        state (see :mod:`flowkit.rk.checkpointed`): the forward pass costs the
        same function evaluations as :meth:`integrate`, the backward pass one
        re-evaluation of each accepted step (``stats.backward_nfe``), and the
        gradients equal those of :meth:`integrate` to round-off.

        Arguments:
            func, y0, t: as for :meth:`integrate`.
            params: the tensors ``func`` depends on that receive gradients;
                other tensors ``func`` closes over get none.

        Raises:
            StepSizeUnderflowError, MaxStepsExceededError, NonFiniteStateError:
                as described in the integrator contract.
        """
        return self._run(func, y0, t, params=tuple(params))

    @abstractmethod
    def _run(
        self, func: Dynamics, y0: State, t: Tensor, *, params: tuple[Tensor, ...] | None = None
    ) -> Solution:
        """The stepping loop (fixed-step or adaptive); ``params`` selects checkpointing."""

    # -- helpers shared by both loops ----------------------------------------
    def _steps(
        self, problem: Problem, params: tuple[Tensor, ...] | None, stats: SolverStats
    ) -> PlainSteps | CheckpointedSteps:
        if params is None:
            return PlainSteps(self.tableau, problem)
        return CheckpointedSteps(self.tableau, problem, params, stats)

    @staticmethod
    def _start(func: Dynamics, y0: State, t: Tensor) -> tuple[Problem, list[float]]:
        problem = Problem(func, y0, t)
        if not all_finite(problem.leaves):
            raise NonFiniteStateError(
                f"the initial state y0 contains NaN or Inf at t={float(t[0])}; "
                "check the data fed to the solver.",
                t=float(t[0]),
            )
        return problem, [float(x) for x in t.tolist()]

    @staticmethod
    def _finish(
        y0: State,
        t: Tensor,
        outputs: list[tuple[Tensor, ...]],
        stats: SolverStats,
        partial_t: float | None = None,
    ) -> Solution:
        n = len(outputs[0])
        ys = tuple(torch.stack([o[i] for o in outputs]) for i in range(n))
        ts = t[: len(outputs)]
        if partial_t is not None:
            ts = torch.cat([t[: len(outputs) - 1], t.new_tensor([partial_t])])
        return Solution(ts=ts, ys=like(y0, ys), stats=stats)

    def _max_steps_hit(
        self,
        y0: State,
        t: Tensor,
        outputs: list[tuple[Tensor, ...]],
        y: tuple[Tensor, ...],
        t_cur: float,
        stats: SolverStats,
        max_steps: int,
        on_max_steps: OnMaxSteps,
    ) -> Solution:
        stats.t_reached = t_cur
        if on_max_steps == "return":
            stats.status = "max_steps_reached"
            return self._finish(y0, t, [*outputs, y], stats, partial_t=t_cur)
        raise MaxStepsExceededError(
            f"{type(self).__name__} used its max_steps={max_steps} steps and stopped at "
            f"t={t_cur!r} (integrating from {float(t[0])!r} to {float(t[-1])!r}). Raise "
            "max_steps, loosen the tolerances or enlarge the step, or pass "
            "on_max_steps='return' to get the partial solution.",
            t=t_cur,
        )
