"""The full path: an integrator with its own stepping loop.

Use it when the method is not an explicit Runge-Kutta tableau (for those,
see ``tableau_method.py``: a tableau and one line). This one is Shu and
Osher's SSP-RK3 written out by hand, registered as ``ssprk3_by_hand``; it
gives the same steps as the tableau version of ``plugins/example_plugin``.

Deriving from :class:`flowkit.interfaces.FixedStepIntegrator` declares the
fixed-step options with flowkit's one meaning (``n_steps``: equal steps
across the whole span ``t[0]..t[-1]``; ``step_size``: the largest step) and
provides :meth:`~flowkit.interfaces.FixedStepIntegrator.step_counts`, the
routine that splits the output intervals. The loop only steps. It gets
flowkit's ``backprop`` and ``adjoint`` gradients; the ``checkpoint``
strategy would need it to implement
:class:`flowkit.interfaces.SupportsCheckpointing` and declare
``checkpointable = True``.
"""

from __future__ import annotations

import itertools

import torch
from torch import Tensor

import flowkit
from flowkit.interfaces import FixedStepIntegrator
from flowkit.solution import Solution, SolverStats
from flowkit.state import Dynamics, State, as_tuple, like

__all__ = ["HandWrittenSSPRK3", "flowkit_register_integrators"]

Leaves = tuple[Tensor, ...]


class HandWrittenSSPRK3(FixedStepIntegrator):
    """Third-order strong-stability-preserving Runge-Kutta, fixed step, by hand.

    Options: those of :class:`~flowkit.interfaces.FixedStepIntegrator`
    (``max_steps`` and ``on_max_steps`` are not supported and refused).
    """

    order = 3

    def __init__(self, *, step_size: float | None = None, n_steps: int | None = None) -> None:
        super().__init__(step_size=step_size, n_steps=n_steps)

    def integrate(self, func: Dynamics, y0: State, t: Tensor) -> Solution:
        """Take the steps of :meth:`step_counts` between consecutive times of ``t``."""
        stats = SolverStats()

        def f(time: float, y: Leaves) -> Leaves:
            stats.nfe += 1
            s = torch.full((), time, dtype=t.dtype, device=t.device)
            return as_tuple(func(s, like(y0, y)))

        def axpy(a: float, x: Leaves, ys: Leaves) -> Leaves:
            return tuple(b + a * k for b, k in zip(ys, x, strict=True))

        times = [float(x) for x in t.tolist()]
        y = as_tuple(y0)
        outputs = [y]
        h = 0.0
        counts = self.step_counts(times)
        for (t_start, t_end), m in zip(itertools.pairwise(times), counts, strict=True):
            h = (t_end - t_start) / m
            for i in range(m):
                s = t_start + i * h
                y1 = axpy(h, f(s, y), y)
                y2 = tuple(
                    0.75 * a + 0.25 * b for a, b in zip(y, axpy(h, f(s + h, y1), y1), strict=True)
                )
                y3 = axpy(h, f(s + 0.5 * h, y2), y2)
                y = tuple(a / 3 + 2 * b / 3 for a, b in zip(y, y3, strict=True))
                stats.n_accepted += 1
            outputs.append(y)
        stats.final_step_size = abs(h)
        stats.t_reached = times[-1]
        ys = tuple(torch.stack(leaves) for leaves in zip(*outputs, strict=True))
        return Solution(ts=t, ys=like(y0, ys), stats=stats)


@flowkit.hookimpl
def flowkit_register_integrators(register: flowkit.hookspecs.Register) -> None:
    """Register ``ssprk3_by_hand``."""
    register("ssprk3_by_hand", HandWrittenSSPRK3)
