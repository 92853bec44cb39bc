"""The adaptive (embedded-pair) Runge-Kutta loop with PI step control."""

from __future__ import annotations

import math
import sys
from typing import ClassVar

import torch
from torch import Tensor

from flowkit.errors import IntegrationError, NonFiniteStateError, StepSizeUnderflowError
from flowkit.interfaces import AdaptiveIntegrator
from flowkit.interfaces.step_options import OnMaxSteps, positive_number
from flowkit.rk.control import (
    ErrorNorm,
    PIController,
    Tolerance,
    TolLike,
    initial_step,
    norm_value,
)
from flowkit.rk.solver import RungeKuttaIntegrator
from flowkit.rk.stepper import StepResult
from flowkit.solution import Solution, SolverStats
from flowkit.state import Dynamics, State, all_finite

__all__ = ["DEFAULT_CONTROLLER_BETA", "PI_CONTROLLER_BETA", "AdaptiveRungeKutta"]

DEFAULT_CONTROLLER_BETA = 0.0
"""The integral controller torchdiffeq uses, the default of every native adaptive
method. ``PI_CONTROLLER_BETA`` is the choice for solves without gradients."""

PI_CONTROLLER_BETA = 0.04
"""Hairer's PI weight for dopri5: fewer evaluations for the same error in solves
without gradients (``benchmarks/step_control.py``), slower training steps at a
fixed tolerance (see the ``controller_beta`` option)."""

_EPS = sys.float_info.epsilon
_REMEDIES = (
    "Remedies: loosen rtol/atol, use a stiff-capable (implicit) method, or integrate "
    "over a smaller time span; the dynamics may also blow up near this time."
)


class AdaptiveRungeKutta(RungeKuttaIntegrator, AdaptiveIntegrator):
    """An embedded explicit Runge-Kutta pair with error control.

    Steps are accepted when the norm of the scaled error
    ``err / (atol + rtol * max(|y0|, |y1|))`` is at most 1; the step size
    follows a PI controller (:class:`~flowkit.rk.control.PIController`).

    Arguments:
        rtol: relative tolerance (default 1e-7, as torchdiffeq): a float, a
            tensor broadcastable to the state, or a tuple of those, one per leaf.
        atol: absolute tolerance (default 1e-9), same forms as ``rtol``.
        first_step: the first step size (default: Hairer's selection, which
            costs one function evaluation).
        min_step: raise :class:`~flowkit.errors.StepSizeUnderflowError` when
            the step would fall below this (default 0: only round-off).
        max_step: the largest step allowed (default: unbounded).
        max_steps: the budget of attempted (accepted plus rejected) steps
            (default 100000).
        on_max_steps: ``"raise"`` (default) or ``"return"`` the partial
            solution, with ``stats.status == "max_steps_reached"``.
        norm: a callable taking the tuple of scaled-error leaves and returning
            a scalar (default: :func:`~flowkit.rk.control.mixed_rms_norm`,
            the largest per-leaf RMS, as torchdiffeq; ``rms_norm`` pools all
            leaves); e.g. a seminorm that ignores some leaves.
        controller_beta: the PI controller's weight of the previous error
            ratio. The default 0 is the integral controller as torchdiffeq
            applies it (after an accepted step the step never shrinks, and it
            may grow right after a rejection), so that a native method takes
            the same steps as torchdiffeq's with the same tableau. A positive
            value (Hairer's PI value for dopri5 is 0.04) selects Hairer's PI
            controller with his safeguards (the step may shrink after an
            accepted step and does not grow right after a rejection); see
            :class:`~flowkit.rk.control.PIController`. With 0.04, solves
            without gradients (``log_prob``, sampling) reject fewer steps and
            need fewer evaluations for the same error on trained CNF fields
            (``benchmarks/step_control.py``: 0.7 to 0.8 times the evaluations
            for the toy field's log-density). Training steps at a fixed
            tolerance took longer (toy field, d = 2, batch 512, 1e-5:
            backprop 1.07x, adjoint 1.27x the time), so 0.04 is not the
            default: backprop pays for accepted steps, of which PI takes
            more, and the adjoint's backward solve takes smaller steps.

    Raises:
        TypeError: for an unknown option or a wrongly typed value.
        ValueError: for invalid values, including ``rtol`` and ``atol`` both 0.
    """

    adaptive: ClassVar[bool] = True

    def __init__(
        self,
        *,
        rtol: TolLike = 1e-7,
        atol: TolLike = 1e-9,
        first_step: float | None = None,
        min_step: float = 0.0,
        max_step: float | None = None,
        max_steps: int = 100_000,
        on_max_steps: OnMaxSteps = "raise",
        norm: ErrorNorm | None = None,
        controller_beta: float = DEFAULT_CONTROLLER_BETA,
    ) -> None:
        super().__init__(
            rtol=rtol,
            atol=atol,
            first_step=first_step,
            min_step=min_step,
            max_step=max_step,
            max_steps=max_steps,
            on_max_steps=on_max_steps,
            norm=norm,
        )
        beta = positive_number("controller_beta", controller_beta, allow_zero=True) or 0.0
        if beta >= 0.5:
            raise ValueError(f"controller_beta must be below 0.5, got {controller_beta!r}.")
        self.controller_beta = beta

    def _ratio(self, res: StepResult, tol: Tolerance, y: tuple[Tensor, ...]) -> float:
        if torch.is_grad_enabled():  # no graph is recorded here: no need to detach y or y1
            with torch.no_grad():
                return self._ratio(res, tol, y)
        e = norm_value(self.norm, tol.scaled(res.err, y, res.y1))  # type: ignore[arg-type]
        if res.err2 is None:
            return e
        e3 = norm_value(self.norm, tol.scaled(res.err2, y, res.y1))
        if e == 0.0 and e3 == 0.0:
            return 0.0
        return e * e / math.sqrt(e * e + 0.01 * e3 * e3)

    def _underflow(self, h: float, t_cur: float, times: list[float]) -> StepSizeUnderflowError:
        if h < self.min_step:
            why = f"fell below min_step={self.min_step!r}"
        else:
            why = "fell below the round-off level of the time"
        return StepSizeUnderflowError(
            f"{type(self).__name__}: the step size {h:.3g} {why} at t={t_cur!r} "
            f"(integrating from {times[0]!r} to {times[-1]!r}). {_REMEDIES}",
            t=t_cur,
        )

    def _zero_scale(
        self, tol: Tolerance, y: tuple[Tensor, ...], t_cur: float, checked: tuple[Tensor, ...]
    ) -> IntegrationError | None:
        """The error to raise when a non-finite error ratio comes from a zero error scale.

        With finite values everywhere, a NaN or Inf ratio means ``atol + rtol * |y|``
        is 0 for some component (``atol`` 0 where the state is 0), not a bad field.
        """
        with torch.no_grad():
            if not all_finite(tuple(x.detach() for x in (*y, *checked))):
                return None
            zero = any(
                bool((b.detach().abs() * rt + at == 0).any())
                for b, rt, at in zip(y, tol.rtol, tol.atol, strict=True)
            )
        if not zero:
            return None
        return IntegrationError(
            f"{type(self).__name__}: the error scale atol + rtol * |y| is 0 at t={t_cur!r} for a "
            "component where the state is 0 and atol is 0, so the error cannot be measured "
            "(the field and the state are finite). Give a positive atol, e.g. atol=1e-9.",
            t=t_cur,
        )

    def _run(
        self, func: Dynamics, y0: State, t: Tensor, *, params: tuple[Tensor, ...] | None = None
    ) -> Solution:
        tableau = self.tableau
        problem, times = self._start(func, y0, t)
        stats = SolverStats()
        steps = self._steps(problem, params, stats)
        direction = 1.0 if times[1] > times[0] else -1.0
        tol = Tolerance.build(self.rtol, self.atol, problem.leaves)
        hairer = self.controller_beta > 0
        ctrl = PIController(
            tableau.step_exponent,
            beta=self.controller_beta,
            shrink_after_accept=hairer,
            hold_after_reject=hairer,
        )
        dense = tableau.dense is not None

        t_cur = times[0]
        y = problem.leaves
        f0: tuple[Tensor, ...] | None = steps.evaluate(t_cur, y)
        if self.first_step is not None:
            h = self.first_step
        else:
            h = initial_step(
                problem, t_cur, y, f0, direction, tableau.step_exponent, tol, self.norm
            )
        h = min(h, self.max_step, abs(times[-1] - times[0]))
        outputs = [y]
        idx = 1
        attempts = 0
        last_h = h
        n_out = len(times)
        while idx < n_out:
            if attempts >= self.max_steps:
                stats.nfe, stats.final_step_size = problem.nfe, last_h
                return self._max_steps_hit(
                    y0, t, outputs, y, t_cur, stats, self.max_steps, self.on_max_steps
                )
            h = min(h, self.max_step)
            if not h >= self.min_step or h <= 4.0 * _EPS * abs(t_cur):
                if math.isnan(h):
                    zero = self._zero_scale(tol, y, t_cur, () if f0 is None else f0)
                    if zero is not None:
                        raise zero
                    raise NonFiniteStateError(
                        f"NaN step size at t={t_cur!r}: the field's output is NaN or Inf.",
                        t=t_cur,
                    )
                raise self._underflow(h, t_cur, times)
            target = times[-1] if dense else times[idx]
            if h >= abs(target - t_cur):
                t_new = target
            else:
                t_new = t_cur + direction * h
            h_signed = t_new - t_cur
            if f0 is None:
                f0 = steps.evaluate(t_cur, y)
            res = steps.trial(t_cur, y, f0, h_signed)
            attempts += 1
            ratio = self._ratio(res, tol, y)
            if not math.isfinite(ratio):
                zero = self._zero_scale(tol, y, t_cur, (*res.y1, *(res.err or ())))
                if zero is not None:
                    raise zero
                raise NonFiniteStateError(
                    f"NaN or Inf in the state or the field's output in the step from "
                    f"t={t_cur!r} to t={t_new!r}; check the vector field (overflow, "
                    "division by zero) or the initial state.",
                    t=t_cur,
                )
            if ratio <= 1.0:
                stats.n_accepted += 1
                thetas = []
                if dense:
                    while idx < n_out and direction * (times[idx] - t_new) < 0:
                        thetas.append((times[idx] - t_cur) / h_signed)
                        idx += 1
                hit = idx < n_out and times[idx] == t_new
                y1, f0, between = steps.accept(t_cur, y, f0, h_signed, res, thetas)
                outputs.extend(between)
                if hit:
                    outputs.append(y1)
                    idx += 1
                y, t_cur = y1, t_new
                last_h = abs(h_signed)
                h = last_h * ctrl.accept(ratio)
            else:
                stats.n_rejected += 1
                h = abs(h_signed) * ctrl.reject(ratio)
        stats.nfe = problem.nfe
        stats.final_step_size = last_h
        stats.t_reached = t_cur
        stats.extra["next_step_size"] = h
        return self._finish(y0, t, outputs, stats)
