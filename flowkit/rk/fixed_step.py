"""The fixed-step Runge-Kutta loop."""

from __future__ import annotations

from typing import ClassVar

from torch import Tensor

from flowkit.errors import NonFiniteStateError
from flowkit.interfaces import FixedStepIntegrator
from flowkit.rk.solver import RungeKuttaIntegrator
from flowkit.solution import Solution, SolverStats
from flowkit.state import Dynamics, State, all_finite

__all__ = ["FixedStepRungeKutta"]


class FixedStepRungeKutta(RungeKuttaIntegrator, FixedStepIntegrator):
    """A fixed-step explicit Runge-Kutta method.

    Options and their meaning are those of
    :class:`~flowkit.interfaces.FixedStepIntegrator` (``step_size`` or
    ``n_steps`` across the whole span, ``max_steps``, ``on_max_steps``): every
    interval between consecutive output times is divided into the equal steps
    of :meth:`~flowkit.interfaces.FixedStepIntegrator.step_counts`, so output
    times are hit exactly.
    """

    adaptive: ClassVar[bool] = False

    def _run(
        self, func: Dynamics, y0: State, t: Tensor, *, params: tuple[Tensor, ...] | None = None
    ) -> Solution:
        problem, times = self._start(func, y0, t)
        stats = SolverStats()
        steps = self._steps(problem, params, stats)
        y = problem.leaves
        outputs = [y]
        taken = 0
        h = 0.0
        f0: tuple[Tensor, ...] | None = None
        for i, m in enumerate(self.step_counts(times), start=1):
            a, b = times[i - 1], times[i]
            h = (b - a) / m
            for k in range(m):
                t_k = a + k * h
                if self.max_steps is not None and taken >= self.max_steps:
                    stats.nfe, stats.n_accepted, stats.final_step_size = problem.nfe, taken, h
                    return self._max_steps_hit(
                        y0, t, outputs, y, t_k, stats, self.max_steps, self.on_max_steps
                    )
                h_k = (b - t_k) if k == m - 1 else h
                res = steps.trial(t_k, y, f0, h_k)
                y, f0, _ = steps.accept(t_k, y, f0, h_k, res, ())
                taken += 1
                if not all_finite(y):
                    raise NonFiniteStateError(
                        f"NaN or Inf in the state or the field's output in the step from "
                        f"t={t_k!r} to t={t_k + h_k!r}; try a smaller step size, or check "
                        "the vector field for overflow.",
                        t=t_k,
                    )
            outputs.append(y)
        stats.nfe, stats.n_accepted, stats.n_rejected = problem.nfe, taken, 0
        stats.final_step_size = abs(h)
        stats.t_reached = times[-1]
        return self._finish(y0, t, outputs, stats)
