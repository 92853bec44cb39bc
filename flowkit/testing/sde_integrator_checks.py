"""Conformance check for SDE integrators: the contract every ``sde_integrator`` plugin must meet.

:func:`check_sde_integrator` runs an SDE integrator on small problems with
known answers, in float64, and checks the properties of
:class:`flowkit.interfaces.SDEIntegrator`'s contract, raising
:class:`~flowkit.testing.conformance.ConformanceError` naming the first
property that broke; it returns the properties it verified. The orders are
measured by :mod:`flowkit.testing.sde_order`.

Example:
    >>> from flowkit.testing.sde_integrator_checks import check_sde_integrator
    >>> check_sde_integrator("euler_maruyama", orders=False)[:3]
    ['contract', 'dtype', 'seeded reproducibility']
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from flowkit.errors import NonFiniteStateError
from flowkit.interfaces import SDEIntegrator
from flowkit.registry import Registry, get_registry
from flowkit.solution import Solution
from flowkit.testing import problems
from flowkit.testing.conformance import ConformanceError
from flowkit.testing.conformance.common import ConformanceTarget, build_target, target_label
from flowkit.testing.order import RESOLVED_RATE_STEP, order_is_supported
from flowkit.testing.sde_order import (
    GridBrownian,
    geometric_brownian_motion,
    measure_sde_order,
    ornstein_uhlenbeck,
)

__all__ = ["check_sde_integrator"]

_BATCH, _DIM = 4, 3
_ROUNDOFF = 1e-10
"""Float64 agreement required where the answer is exact up to round-off (100 steps)."""


def _seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _zero(t: Tensor, y: Tensor) -> Tensor:
    return torch.zeros_like(y)


def _linear_drift(t: Tensor, y: Tensor) -> Tensor:
    return -0.5 * y + torch.cos(t)


def _state_diffusion(t: Tensor, y: Tensor) -> Tensor:
    return 0.3 * torch.sin(y) + 0.2 * (1.0 + t)


class _Checker:
    """Runs the properties one by one against one integrator."""

    def __init__(self, integrator: SDEIntegrator, label: str) -> None:
        self.integrator = integrator
        self.label = label
        self.y0 = torch.randn(_BATCH, _DIM, generator=_seeded(0), dtype=torch.float64)

    def fail(self, prop: str, detail: str) -> None:
        raise ConformanceError(self.label, prop, detail)

    def run(
        self,
        times: list[float],
        *,
        seed: int | None = 0,
        drift: Callable[[Tensor, Tensor], Tensor] = _linear_drift,
        diffusion: Callable[[Tensor, Tensor], Tensor] = _state_diffusion,
        y0: Tensor | None = None,
        brownian: Any = None,
        integrator: SDEIntegrator | None = None,
    ) -> Solution:
        y0 = self.y0 if y0 is None else y0
        t = torch.tensor(times, dtype=y0.dtype)
        generator = None if seed is None else _seeded(seed)
        solver = integrator or self.integrator
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # a Stratonovich reading's warning
            return solver.integrate(drift, diffusion, y0, t, brownian=brownian, generator=generator)

    def contract(self) -> None:
        times = [0.0, 0.4, 1.0]
        sol = self.run(times)
        if not isinstance(sol, Solution):
            self.fail("contract", f"integrate returned {type(sol).__name__}, not a Solution.")
        expected = (len(times), _BATCH, _DIM)
        if tuple(sol.ys.shape) != expected:
            self.fail("contract", f"ys has shape {tuple(sol.ys.shape)}, expected {expected}.")
        if not torch.equal(sol.ys[0], self.y0):
            self.fail("contract", "ys[0] is not the initial state.")
        if not (sol.stats.nfe > 0 and sol.stats.n_accepted > 0):
            self.fail("contract", f"statistics not counted: {sol.stats}.")
        if not bool(torch.isfinite(sol.ys).all()):
            self.fail("contract", "non-finite states on a benign problem.")

    def dtype(self) -> None:
        for dtype in (torch.float32, torch.float64):
            sol = self.run([0.0, 1.0], y0=self.y0.to(dtype))
            if sol.ys.dtype != dtype:
                self.fail("dtype", f"a {dtype} state came back as {sol.ys.dtype}.")

    def reproducibility(self) -> None:
        first, again = self.run([0.0, 1.0], seed=3).ys, self.run([0.0, 1.0], seed=3).ys
        if not torch.equal(first, again):
            self.fail("seeded reproducibility", "the same generator seed gave different paths.")
        other = self.run([0.0, 1.0], seed=4).ys
        if torch.equal(first, other):
            self.fail("different seeds differ", "generators seeded 3 and 4 gave the same path.")

    def decreasing_times(self) -> None:
        sol = self.run([1.0, 0.5, 0.0])
        if tuple(sol.ys.shape) != (3, _BATCH, _DIM) or not bool(torch.isfinite(sol.ys).all()):
            self.fail("decreasing times", f"backward run gave ys of shape {tuple(sol.ys.shape)}.")

    def brownian_honoured(self) -> None:
        """``dy = c dW`` gives ``y0 + c (W(max) - W(min))`` exactly, whichever the seed."""
        scale = 0.7

        def constant(t: Tensor, y: Tensor) -> Tensor:
            return torch.full_like(y, scale)

        for times in ([0.0, 0.5, 1.0], [1.0, 0.5, 0.0]):
            bm = GridBrownian(0.0, 1.0, (_BATCH, _DIM), 100, generator=_seeded(5))
            runs = [
                self.run(times, seed=seed, drift=_zero, diffusion=constant, brownian=bm).ys[-1]
                for seed in (1, 2)
            ]
            if not torch.equal(runs[0], runs[1]):
                self.fail("given brownian honoured", "the result depends on the generator.")
            expected = self.y0 + scale * bm(0.0, 1.0)
            error = float((runs[0] - expected).abs().max())
            if not error <= _ROUNDOFF:
                self.fail(
                    "given brownian honoured",
                    f"dy = {scale} dW from t={times[0]} to t={times[-1]} is off the given path's "
                    f"increment by {error:.2e} (the noise must come from brownian(min, max)).",
                )

    def zero_diffusion(self) -> None:
        """Zero noise: an ODE solver of order at least 1, forward and backward."""
        problem = problems.linear_skew(dim=_DIM, batch=_BATCH, t1=0.5)
        span = problem.t1 - problem.t0
        n = 2 ** math.ceil(math.log2(problem.rate * span / RESOLVED_RATE_STEP))
        start, end = problem.exact(problem.t0), problem.exact(problem.t1)
        for times, y0, exact in (
            ([problem.t0, problem.t1], start, end),
            ([problem.t1, problem.t0], end, start),
        ):
            errors = []
            # The noise is multiplied by zero; a grid path keeps its queries cheap.
            bm = GridBrownian(problem.t0, problem.t1, tuple(y0.shape), 4 * n)
            for steps in (n, 2 * n, 4 * n):
                solver = _with_steps(self.integrator, steps)
                final = self.run(
                    times,
                    drift=problem.func,
                    diffusion=_zero,
                    y0=y0,
                    brownian=bm,
                    integrator=solver,
                ).ys[-1]
                errors.append(max(float((final - exact).abs().max()), 1e-300))
            slope = math.log(errors[0] / errors[-1]) / math.log(4.0)
            if not (order_is_supported(slope, 1) or errors[-1] <= _ROUNDOFF):
                self.fail(
                    "zero diffusion is an ODE solver of order >= 1",
                    f"from t={times[0]} to t={times[-1]}: errors {errors} at "
                    f"{[n, 2 * n, 4 * n]} steps (slope {slope:.2f}).",
                )

    def non_finite(self) -> None:
        def blows_up(t: Tensor, y: Tensor) -> Tensor:
            return y * float("nan")

        try:
            self.run([0.0, 1.0], drift=blows_up)
        except NonFiniteStateError:
            return
        self.fail("NaN raises", "a NaN drift did not raise NonFiniteStateError.")

    def differentiable(self) -> None:
        rate = torch.tensor(0.5, dtype=torch.float64, requires_grad=True)
        y0 = self.y0.clone().requires_grad_(True)

        def drift(t: Tensor, y: Tensor) -> Tensor:
            return -rate * y

        self.run([0.0, 1.0], drift=drift, y0=y0).ys[-1].sum().backward()
        for name, grad in (("y0", y0.grad), ("a drift parameter", rate.grad)):
            if grad is None or not bool(torch.isfinite(grad).all()):
                self.fail("differentiable", f"no finite gradient reaches {name}.")


def _with_steps(integrator: SDEIntegrator, steps: int) -> SDEIntegrator:
    """A copy of ``integrator`` that takes ``steps`` equal steps across the span."""
    clone = copy.copy(integrator)
    clone.step_size, clone.n_steps = None, steps
    return clone


def _check_orders(build: Callable[[int], SDEIntegrator], cls: type, label: str) -> list[str]:
    """Strong orders on GBM and OU (both directions), weak orders where resolved."""
    reading = cls.sde_type
    additive = max(cls.strong_order, cls.additive_strong_order)
    runs = (
        ("strong order (multiplicative noise)", geometric_brownian_motion(), 0.0, 1.0, None),
        ("strong order (additive noise)", ornstein_uhlenbeck(), 0.0, 1.0, additive),
        ("strong order (additive noise, reverse time)", ornstein_uhlenbeck(), 1.0, 0.0, additive),
    )
    weak = []
    for prop, problem, t0, t1, declared in runs:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # GBM under a Stratonovich reading
            measured = measure_sde_order(build, problem, t0=t0, t1=t1, reading=reading)
        strong = measured["strong"]
        order = cls.strong_order if declared is None else declared
        if not (strong.resolved and strong.supports(order)):
            raise ConformanceError(
                label, prop, f"declared {order}, {strong.describe()} on {problem.name}."
            )
        weak += [(problem.name, m) for k, m in measured.items() if k != "strong"]
    resolved = [(name, m) for name, m in weak if m.resolved]
    failed = [f"{m.describe()} on {name}" for name, m in resolved if not m.supports(cls.weak_order)]
    if not resolved or failed:
        detail = "; ".join(failed) or "no weak error was large enough to measure an order"
        raise ConformanceError(label, "weak order", f"declared {cls.weak_order}: {detail}.")
    return [run[0] for run in runs] + ["weak order"]


def check_sde_integrator(
    integrator: ConformanceTarget,
    *,
    options: dict[str, Any] | None = None,
    orders: bool = True,
    registry: Registry | None = None,
) -> list[str]:
    """Check an SDE integrator against the :class:`~flowkit.interfaces.SDEIntegrator` contract.

    Properties, in order (float64 unless said otherwise; batch 4, dimension 3):
        * ``contract``: a :class:`~flowkit.solution.Solution` with ``ys`` of shape
          ``(len(t), batch, d)`` starting at ``y0``, counted statistics, finite states;
        * ``dtype``: float32 and float64 states keep their dtype;
        * ``seeded reproducibility`` and ``different seeds differ``;
        * ``decreasing times``: a backward run works;
        * ``given brownian honoured``: ``dy = c dW`` ends at
          ``y0 + c (W(max) - W(min))`` of the given path to round-off, in both
          directions, whatever the generator;
        * ``zero diffusion is an ODE solver of order >= 1``, forward and backward
          (``linear_skew``, the slope at least 1/2 as in
          :func:`flowkit.testing.order.order_is_supported`);
        * ``NaN raises`` :class:`~flowkit.errors.NonFiniteStateError`;
        * ``differentiable``: gradients reach ``y0`` and a drift parameter;
        * with ``orders`` (given by name or class): the strong order on
          geometric Brownian motion at least the declared ``strong_order``, on
          Ornstein-Uhlenbeck forward and backward at least the larger of
          ``strong_order`` and ``additive_strong_order``, and every weak error
          measured precisely enough supporting ``weak_order``, within the band
          of :mod:`flowkit.testing.sde_order`, in the integrator's ``sde_type``.

    Arguments:
        integrator: a registered name, an ``SDEIntegrator`` class or an instance.
        options: constructor options (name or class only).
        orders: also measure the convergence orders (a few seconds).
        registry: where names are looked up (default: the global registry).

    Returns:
        The names of the properties verified.

    Raises:
        ConformanceError: naming the first property that broke.
        TypeError: options with an instance, or a target that is no SDE integrator.
    """
    options = dict(options or {})
    label = target_label(integrator)
    built = build_target("sde_integrator", integrator, options, registry)
    if not isinstance(built, SDEIntegrator):
        raise TypeError(f"{label} is not an SDEIntegrator (got {type(built).__name__}).")
    checker = _Checker(built, label)
    checker.contract()
    checker.dtype()
    checker.reproducibility()
    checker.decreasing_times()
    checker.brownian_honoured()
    checker.zero_diffusion()
    checker.non_finite()
    checker.differentiable()
    verified = [
        "contract",
        "dtype",
        "seeded reproducibility",
        "different seeds differ",
        "decreasing times",
        "given brownian honoured",
        "zero diffusion is an ODE solver of order >= 1",
        "NaN raises",
        "differentiable",
    ]
    if orders and not isinstance(integrator, SDEIntegrator):
        factory = (
            (registry or get_registry()).get("sde_integrator", integrator).factory
            if isinstance(integrator, str)
            else integrator
        )

        def build(steps: int) -> SDEIntegrator:
            grid = {k: v for k, v in options.items() if k not in ("step_size", "n_steps")}
            return factory(**grid, n_steps=steps)  # type: ignore[no-any-return]

        verified += _check_orders(build, type(built), label)
    return verified
