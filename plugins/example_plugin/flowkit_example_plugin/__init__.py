"""An example third-party flowkit plugin: Shu and Osher's SSP-RK3 integrator.

Installed with ``pip install``, it is found through the ``flowkit`` entry-point
group declared in its ``pyproject.toml``, with no change to flowkit:
``flowkit list`` shows ``ssprk3`` and ``flowkit.odeint(..., method="ssprk3")``
uses it, with every gradient strategy that needs nothing more of it.

References:
    Shu, C.-W. and Osher, S. (1988). Efficient implementation of essentially
    non-oscillatory shock-capturing schemes. J. Comput. Phys. 77(2).
"""

from __future__ import annotations

import itertools

import torch
from torch import Tensor

import flowkit
from flowkit.solution import Solution, SolverStats
from flowkit.state import Dynamics, State, as_tuple, like

__all__ = ["SSPRK3", "flowkit_register_integrators"]


class SSPRK3(flowkit.Integrator):
    """Third-order strong-stability-preserving Runge-Kutta, fixed step.

    Arguments:
        n_steps: steps per interval between consecutive output times.
    """

    order = 3

    def __init__(self, *, n_steps: int = 20) -> None:
        if n_steps < 1:
            raise ValueError(f"n_steps must be a positive integer, got {n_steps}.")
        self.n_steps = n_steps

    def integrate(self, func: Dynamics, y0: State, t: Tensor) -> Solution:
        """Take ``n_steps`` equal steps between consecutive times of ``t``."""
        stats = SolverStats()

        def f(time: Tensor, y: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
            stats.nfe += 1
            return as_tuple(func(time, like(y0, y)))

        def axpy(a: float, x: tuple[Tensor, ...], ys: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
            return tuple(b + a * k for b, k in zip(ys, x, strict=True))

        y = as_tuple(y0)
        outputs = [y]
        for t_start, t_end in itertools.pairwise(t):
            h = (t_end - t_start) / self.n_steps
            for i in range(self.n_steps):
                s = t_start + i * h
                y1 = axpy(h, f(s, y), y)
                y2 = tuple(
                    0.75 * a + 0.25 * b for a, b in zip(y, axpy(h, f(s + h, y1), y1), strict=True)
                )
                y3 = axpy(h, f(s + 0.5 * h, y2), y2)
                y = tuple(a / 3 + 2 * b / 3 for a, b in zip(y, y3, strict=True))
                stats.n_accepted += 1
            outputs.append(y)
        stats.final_step_size = float(h)
        stats.t_reached = float(t[-1])
        ys = tuple(torch.stack(leaves) for leaves in zip(*outputs, strict=True))
        return Solution(ts=t, ys=like(y0, ys), stats=stats)


@flowkit.hookimpl
def flowkit_register_integrators(register: flowkit.hookspecs.Register) -> None:
    """Register ``ssprk3`` with flowkit."""
    register("ssprk3", SSPRK3, aliases=("shu_osher",))
