"""The SDE-integrator contract: solving ``dy = mu(t, y) dt + sigma(t, y) dW`` with real noise."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import ClassVar, Literal, Protocol

import torch
from torch import Tensor

from flowkit.interfaces.step_options import (
    check_step_grid,
    equal_step_counts,
    largest_grid_step,
)
from flowkit.solution import Solution

__all__ = ["BrownianMotion", "SDEFunction", "SDEIntegrator", "SDEType"]

SDEType = Literal["ito", "stratonovich"]

SDEFunction = Callable[[Tensor, Tensor], Tensor]
"""``(t, y) -> Tensor``: a drift or a diagonal diffusion, with ``y``'s shape."""


class BrownianMotion(Protocol):
    """A Brownian path queried by intervals, as torchsde's ``BrownianInterval``.

    ``bm(ta, tb)`` returns the increment ``W(tb) - W(ta)`` (shape of the state)
    for ``ta < tb`` in the path's interval; the same query gives the same
    increment, and increments over adjoining intervals add up, so one path
    can be queried on grids of different step sizes (strong convergence).
    """

    def __call__(self, ta: float | Tensor, tb: float | Tensor) -> Tensor: ...


class SDEIntegrator(ABC):
    """A fixed-step solver of ``dy = mu(t, y) dt + sigma(t, y) dW`` with diagonal noise.

    Contract:
        * Options are keyword arguments of the constructor; an unknown option
          is a ``TypeError``. ``step_size`` and ``n_steps`` mean what they mean
          for fixed-step ODE integrators
          (:class:`~flowkit.interfaces.FixedStepIntegrator`): the largest step,
          or the number of equal steps across the whole span (default 100);
          each output interval is split into equal steps (:meth:`step_counts`).
        * :meth:`integrate` takes the drift ``mu(t, y)`` and the diagonal
          diffusion ``sigma(t, y)`` (each returns ``y``'s shape; a diffusion
          that depends on ``t`` only broadcasts), an initial state ``y0`` of
          shape ``(batch, d)`` at ``t[0]``, and a 1-D tensor ``t`` of at least
          two strictly monotone times. Decreasing times integrate backward in
          time (the reverse-time SDE of score-based models): each step uses
          ``dt < 0`` and a Brownian increment of variance ``|dt|``.
        * Noise: ``brownian`` is a :class:`BrownianMotion` on
          ``[min(t), max(t)]`` to take increments from (for strong-convergence
          studies and reproducibility across step sizes); without it the
          integrator draws its own from ``generator`` (``None``: torch's global
          generator), so a seeded generator gives the same path every time.
          A step from ``ta`` down to ``tb < ta`` takes the increment
          ``brownian(tb, ta)``.
        * It returns a :class:`~flowkit.solution.Solution` with the states at
          every time of ``t`` stacked along a new first axis (shape
          ``(len(t), batch, d)``) and statistics (``nfe`` counts drift
          evaluations; ``n_accepted`` the steps).
        * NaN or Inf raises :class:`~flowkit.errors.NonFiniteStateError`
          naming the time reached. Operations are differentiable.
        * ``sde_type`` says how the integrator reads the noise. For diffusion
          independent of the state (every built-in :class:`~flowkit.interfaces.SDE`)
          Itô and Stratonovich solutions coincide, so any SDE integrator samples
          the reverse-time SDE of a score model.

    Capabilities (class attributes):
        strong_order: the strong (pathwise) order of convergence for the noise
            types it supports (0.5 for Euler-Maruyama with state-dependent
            noise; 1.0 with additive noise is common, see the method's docs).
        additive_strong_order: the strong order when the diffusion does not
            depend on the state (additive noise, as in every built-in
            :class:`~flowkit.interfaces.SDE`); at least ``strong_order``, and
            the conformance kit takes the larger of the two.
        weak_order: the weak order (of expectations).
        sde_type: ``"ito"`` or ``"stratonovich"``.
    """

    strong_order: ClassVar[float] = 0.5
    additive_strong_order: ClassVar[float] = 0.5
    weak_order: ClassVar[float] = 1.0
    sde_type: ClassVar[SDEType] = "ito"
    capability_names: ClassVar[tuple[str, ...]] = (
        "strong_order",
        "additive_strong_order",
        "weak_order",
        "sde_type",
    )

    def __init__(self, *, step_size: float | None = None, n_steps: int | None = None) -> None:
        self.step_size, self.n_steps = check_step_grid(step_size, n_steps)

    def step_counts(self, times: Sequence[float]) -> list[int]:
        """The number of equal steps in each interval between consecutive ``times``."""
        return equal_step_counts(times, largest_grid_step(times, self.step_size, self.n_steps))

    @abstractmethod
    def integrate(
        self,
        drift: SDEFunction,
        diffusion: SDEFunction,
        y0: Tensor,
        t: Tensor,
        *,
        brownian: BrownianMotion | None = None,
        generator: torch.Generator | None = None,
    ) -> Solution:
        """Solve from ``t[0]`` through every time of ``t``; see the class contract."""
