"""Measuring an SDE integrator's strong and weak orders on SDEs with known solutions.

One measurement, used by the SDE-integrator conformance kit and flowkit's tests.

*Noise.* :class:`GridBrownian` is a Brownian path sampled once on a fine
grid (increments and space-time Lévy areas), answering
``bm(ta, tb[, return_U=True])`` exactly for grid times in O(1): every step
size that divides the grid sees the same path, and the exact solution is
computed from the same path.

*Problems* (:class:`LinearSDE`): ``dy = a y dt + b y^k dW`` in one dimension per
coordinate, solved from ``t0`` to ``t1`` (either direction):

* :func:`ornstein_uhlenbeck` (``k = 0``, additive noise): the exact solution
  is ``e^{a (t1 - t0)} y0 + b int e^{a (t1 - s)} dW(s)`` (for ``t1 < t0`` the
  integral runs over ``[t1, t0]`` with the weight ``e^{a (t1 - s)}`` read in
  reverse time, see :meth:`LinearSDE.exact`). The stochastic integral is
  summed over the fine grid with the weight expanded to first order inside
  each cell, ``int_cell e^{c s} dW = e^{c s_k} ((1 + c d) dW_k - c U_k)``,
  whose error over the span has standard deviation about ``c^2 d^2 / 4.5``
  (the dropped term ``c^2 / 2 int (s - s_k)^2 dW`` summed over the cells):
  2e-7 for ``c = 1`` and ``d = 1/1024`` (:data:`CELLS_PER_STEP` cells per
  finest step of 1/64), 1% of the smallest error measured.
* :func:`geometric_brownian_motion` (``k = 1``, multiplicative noise):
  ``y0 exp((a - b^2 / 2) T + b W_T)`` (Itô) or ``y0 exp(a T + b W_T)``
  (Stratonovich), with ``T`` and ``W_T`` signed for reverse time.

*Strong error* ``E|Y_h(t1) - Y(t1)|`` and *weak error*
``E f(Y_h(t1)) - E f(Y(t1))`` (``f(y) = y`` and ``y^2``) are averaged over
``paths`` independent paths at ``n, 2n, 4n, 8n`` steps. The weak error is
estimated as the mean of ``f(Y_h) - f(Y)`` on the same paths: its
expectation is exactly the weak error (``E f(Y)`` is the closed form, which
:meth:`LinearSDE.closed_form_moments` gives and the tests check the paths
against), while its variance is the strong error's, not ``Var f(Y)``.

*Order.* The slope of log error against log step is fitted by least squares;
its standard error comes from the sample covariance of the per-path errors
across step sizes (delta method). SDE orders come in steps of 1/2, so a
measured slope supports a declared order ``p`` when it is at least
``p - 1/4`` (:data:`ORDER_BAND`): midway to the next lower order. A
measurement whose four standard errors exceed the band cannot tell the two
apart and is reported as unresolved (:attr:`SDEOrderMeasurement.resolved`).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor

__all__ = [
    "ORDER_BAND",
    "GridBrownian",
    "LinearSDE",
    "SDEOrderMeasurement",
    "geometric_brownian_motion",
    "measure_sde_order",
    "ornstein_uhlenbeck",
]

ORDER_BAND = 0.25
"""Half the spacing between SDE orders (0.5, 1.0, 1.5, ...)."""

CELLS_PER_STEP = 16
"""Grid cells of the path per step of the finest measured grid (the reference's resolution)."""

Reading = Literal["ito", "stratonovich"]


class GridBrownian:
    """A Brownian path on ``[t0, t1]`` sampled on ``n_cells`` equal cells.

    Arguments:
        t0, t1: the interval (``t0 < t1``).
        shape: the shape of one increment (``(batch, d)``).
        n_cells: the number of grid cells; queried times must be grid times.
        generator: the source of the path (``None``: torch's global one).
        dtype: the dtype of the path (float64 by default).

    ``bm(ta, tb)`` returns ``W(tb) - W(ta)``; with ``return_U=True`` also the
    space-time Lévy area ``int_ta^tb (W(s) - W(ta)) ds``, torchsde's
    convention (``levy_area_approximation = "space-time"``).

    Raises:
        ValueError: for a time off the grid or outside ``[t0, t1]``.
    """

    levy_area_approximation = "space-time"

    def __init__(
        self,
        t0: float,
        t1: float,
        shape: tuple[int, ...],
        n_cells: int,
        *,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float64,
    ) -> None:
        self.t0, self.t1, self.n_cells = float(t0), float(t1), int(n_cells)
        self.cell = (self.t1 - self.t0) / self.n_cells
        draws = torch.randn((2, self.n_cells, *shape), generator=generator, dtype=dtype)
        dw = draws[0] * math.sqrt(self.cell)
        # The area of a cell: its mean given the increment, d dW / 2, plus an
        # independent part of variance d^3 / 12.
        du = 0.5 * self.cell * dw + self.cell**1.5 / math.sqrt(12.0) * draws[1]
        zero = torch.zeros((1, *shape), dtype=dtype)
        self.increments, self.areas = dw, du
        self.w = torch.cat([zero, dw.cumsum(0)])
        self.cum_area = torch.cat([zero, du.cumsum(0)])
        self.cum_w = torch.cat([zero, self.w[:-1].cumsum(0)])  # sum of W at left ends

    def index(self, t: float | Tensor) -> int:
        """The grid index of the time ``t``."""
        position = (float(t) - self.t0) / self.cell
        i = round(position)
        if abs(position - i) > 1e-6 or not 0 <= i <= self.n_cells:
            raise ValueError(
                f"GridBrownian on [{self.t0}, {self.t1}] with {self.n_cells} cells was queried at "
                f"t={float(t)!r}, which is not a grid time; use step counts that divide "
                f"{self.n_cells}."
            )
        return i

    def __call__(
        self,
        ta: float | Tensor,
        tb: float | Tensor,
        return_U: bool = False,  # noqa: N803 - torchsde's name
    ) -> Tensor | tuple[Tensor, Tensor]:
        i, j = self.index(ta), self.index(tb)
        increment = self.w[j] - self.w[i]
        if not return_U:
            return increment
        area = (self.cum_area[j] - self.cum_area[i]) + self.cell * (
            (self.cum_w[j] - self.cum_w[i]) - (j - i) * self.w[i]
        )
        return increment, area

    def weighted_integral(self, lo: int, hi: int, rate: float, anchor: float) -> Tensor:
        """``int e^{rate (s - anchor)} dW(s)`` over grid cells ``lo .. hi - 1`` (see the module)."""
        starts = self.t0 + self.cell * torch.arange(lo, hi, dtype=self.w.dtype)
        weight = torch.exp(rate * (starts - anchor)).reshape(-1, *([1] * (self.w.dim() - 1)))
        cells = (1.0 + rate * self.cell) * self.increments[lo:hi] - rate * self.areas[lo:hi]
        return (weight * cells).sum(0)


@dataclass(frozen=True)
class LinearSDE:
    """``dy = a y dt + b y^power dW`` (diagonal noise), with its exact solution.

    Attributes:
        name: a label.
        a, b: the drift rate and the noise scale.
        power: 0 (additive noise, Ornstein-Uhlenbeck) or 1 (multiplicative, GBM).
        y0: the initial value of every coordinate.
    """

    name: str
    a: float
    b: float
    power: int
    y0: float = 1.0

    def drift(self, t: Tensor, y: Tensor) -> Tensor:
        """``a y``."""
        return self.a * y

    def diffusion(self, t: Tensor, y: Tensor) -> Tensor:
        """``b`` (additive) or ``b y`` (multiplicative)."""
        return self.b * y if self.power == 1 else torch.full_like(y, self.b)

    def exact(self, bm: GridBrownian, t0: float, t1: float, reading: Reading = "ito") -> Tensor:
        """The exact ``Y(t1)`` on the path ``bm``, started from ``y0`` at ``t0``.

        In reverse time (``t1 < t0``) the SDE is read as every flowkit SDE
        integrator steps it: ``u = -t`` with the Brownian motion
        ``B(u) = -W(-u)``, i.e. ``dY = -a Y du + b Y^power dB(u)``.
        """
        i0, i1 = bm.index(t0), bm.index(t1)
        span = t1 - t0  # signed
        if self.power == 1:
            w = bm.w[max(i0, i1)] - bm.w[min(i0, i1)]  # W(later) - W(earlier) = B increment
            ito = -0.5 * self.b**2 * abs(span) if reading == "ito" else 0.0
            return self.y0 * torch.exp(self.a * span + ito + self.b * w)
        if span > 0:  # e^{a (t1 - s)}: rate -a anchored at t1
            noise = bm.weighted_integral(i0, i1, -self.a, t1)
        else:  # in u = -t, int e^{-a (u1 - v)} dB(v) = int_{t1}^{t0} e^{-a (s - t1)} dW(s)
            noise = bm.weighted_integral(i1, i0, -self.a, t1)
        return self.y0 * math.exp(self.a * span) + self.b * noise

    def closed_form_moments(self, span: float, reading: Reading = "ito") -> tuple[float, float]:
        """``(E Y, E Y^2)`` after a time ``span > 0`` forward."""
        a, b, y0 = self.a, self.b, self.y0
        if self.power == 1:
            drift = a if reading == "ito" else a + 0.5 * b**2
            return y0 * math.exp(drift * span), y0**2 * math.exp((2 * drift + b**2) * span)
        mean = y0 * math.exp(a * span)
        variance = b**2 * math.expm1(2 * a * span) / (2 * a)
        return mean, mean**2 + variance


def ornstein_uhlenbeck(rate: float = 1.0, scale: float = 0.8, y0: float = 1.0) -> LinearSDE:
    """``dy = -rate y dt + scale dW``: additive noise."""
    return LinearSDE("ornstein_uhlenbeck", -rate, scale, 0, y0)


def geometric_brownian_motion(mu: float = 1.0, sigma: float = 0.5, y0: float = 1.0) -> LinearSDE:
    """``dy = mu y dt + sigma y dW``: multiplicative noise."""
    return LinearSDE("geometric_brownian_motion", mu, sigma, 1, y0)


@dataclass(frozen=True)
class SDEOrderMeasurement:
    """Errors at ``steps`` equal steps, the fitted slope and its standard error."""

    kind: str
    steps: tuple[int, ...]
    errors: tuple[float, ...]
    standard_errors: tuple[float, ...]
    slope: float
    slope_standard_error: float

    @property
    def resolved(self) -> bool:
        """Whether four standard errors of the slope fit inside :data:`ORDER_BAND`."""
        return 4.0 * self.slope_standard_error <= ORDER_BAND

    def supports(self, order: float) -> bool:
        """Whether the slope is at least ``order - ORDER_BAND`` (one-sided, see the module)."""
        return self.slope >= order - ORDER_BAND

    def describe(self) -> str:
        """``strong order 1.02 +- 0.03 (errors ... at [...] steps)``."""
        errors = ", ".join(f"{e:.2e}" for e in self.errors)
        return (
            f"{self.kind} order {self.slope:.2f} +- {self.slope_standard_error:.2f} "
            f"(errors {errors} at {list(self.steps)} steps)"
        )


def _fit(kind: str, steps: tuple[int, ...], samples: Tensor) -> SDEOrderMeasurement:
    """The slope of ``log |mean|`` against ``log h``, from per-path values ``(steps, paths)``."""
    paths = samples.shape[1]
    means = samples.mean(1)
    centred = samples - means[:, None]
    covariance = centred @ centred.T / (paths - 1) / paths  # covariance of the means
    x = -torch.log(torch.tensor(steps, dtype=samples.dtype))
    weights = (x - x.mean()) / ((x - x.mean()) ** 2).sum()
    magnitudes = means.abs().clamp_min(1e-300)
    slope = float((weights * magnitudes.log()).sum())
    gradient = weights / means.where(means != 0, torch.ones_like(means))
    variance = float(gradient @ covariance @ gradient)
    return SDEOrderMeasurement(
        kind,
        steps,
        tuple(float(m) for m in magnitudes),
        tuple(float(v) for v in covariance.diagonal().sqrt()),
        slope,
        math.sqrt(max(variance, 0.0)),
    )


@functools.lru_cache(maxsize=2)
def _shared_path(lo: float, hi: float, paths: int, cells: int, seed: int) -> GridBrownian:
    """One path per configuration, shared by every integrator measured on it."""
    generator = torch.Generator().manual_seed(seed)
    return GridBrownian(lo, hi, (paths, 1), cells, generator=generator)


def measure_sde_order(
    build: Callable[[int], Any],
    problem: LinearSDE,
    *,
    t0: float = 0.0,
    t1: float = 1.0,
    steps: tuple[int, ...] = (8, 16, 32, 64),
    paths: int = 1000,
    seed: int = 0,
    reading: Reading = "ito",
) -> dict[str, SDEOrderMeasurement]:
    """Strong and weak errors of an integrator on ``problem``, and their orders.

    Arguments:
        build: makes the integrator for a number of equal steps.
        problem: the SDE (:func:`ornstein_uhlenbeck`, :func:`geometric_brownian_motion`).
        t0, t1: the span (``t1 < t0``: reverse time).
        steps: the step counts; the path's grid has ``CELLS_PER_STEP * max(steps)``
            cells, which each count must divide (powers of two do).
        paths: independent paths (the batch).
        seed: the seed of the path.
        reading: ``"ito"`` or ``"stratonovich"``: the exact solution to compare with
            (the integrator's ``sde_type``).

    Returns:
        ``{"strong": ..., "weak mean": ..., "weak second moment": ...}``.
    """
    bm = _shared_path(min(t0, t1), max(t0, t1), paths, CELLS_PER_STEP * max(steps), seed)
    exact = problem.exact(bm, t0, t1, reading)[:, 0]
    y0 = torch.full((paths, 1), problem.y0, dtype=torch.float64)
    times = torch.tensor([t0, t1], dtype=torch.float64)
    finals = torch.stack(
        [
            build(n)
            .integrate(problem.drift, problem.diffusion, y0, times, brownian=bm)
            .ys[-1, :, 0]
            for n in steps
        ]
    )
    return {
        "strong": _fit("strong", steps, (finals - exact).abs()),
        "weak mean": _fit("weak (mean)", steps, finals - exact),
        "weak second moment": _fit("weak (second moment)", steps, finals**2 - exact**2),
    }
