"""Integrator base classes running a :class:`~flowkit.rk.tableau.ButcherTableau`.

:class:`FixedStepRungeKutta` and :class:`AdaptiveRungeKutta` are the two loops;
a concrete method is a subclass that sets ``tableau`` and ``order`` (see
``plugins/native_integrators.py``). Both implement the
:class:`~flowkit.interfaces.Integrator` contract for tensor and tuple states,
either time direction and several output times, and both are
``checkpointable``: :meth:`integrate_checkpointed` makes each accepted step
one autograd node that recomputes the step's internals in the backward pass
(:mod:`flowkit.rk.checkpointed`), with the step sizes decided on detached
values, so its gradients equal those of plain backpropagation through the same
steps, for the same forward function evaluations.

Output times are reached without degrading accuracy: a method with dense output
(``dopri5``) interpolates with its own continuous extension; every other method
steps exactly onto each output time.

Gradients flow to ``y0`` and to the tensors ``func`` uses, not to ``t``: the
solver handles times as Python floats. Time gradients are added for every
integrator by the one solve path (:func:`flowkit.solve.solve`).
"""

from __future__ import annotations

import itertools
import math
import sys
from abc import abstractmethod
from collections.abc import Sequence
from typing import ClassVar, Literal

import torch
from torch import Tensor

from flowkit.errors import (
    IntegrationError,
    MaxStepsExceededError,
    NonFiniteStateError,
    StepSizeUnderflowError,
)
from flowkit.interfaces import Integrator
from flowkit.rk.checkpointed import CheckpointedSteps
from flowkit.rk.control import (
    ErrorNorm,
    PIController,
    Tolerance,
    initial_step,
    mixed_rms_norm,
    validate_tolerance_pair,
)
from flowkit.rk.control import validate_tolerance as _validate_tol
from flowkit.rk.stepper import StepResult, dense_state, rk_step
from flowkit.rk.tableau import ButcherTableau
from flowkit.solution import Solution, SolverStats
from flowkit.state import Dynamics, State, as_tuple, like

__all__ = ["AdaptiveRungeKutta", "FixedStepRungeKutta", "RungeKuttaIntegrator"]

OnMaxSteps = Literal["raise", "return"]
_EPS = sys.float_info.epsilon
_REMEDIES = (
    "Remedies: loosen rtol/atol, use a stiff-capable (implicit) method, or integrate "
    "over a smaller time span; the dynamics may also blow up near this time."
)


def _positive(name: str, value: float | None, *, allow_zero: bool = False) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}.")
    ok = value >= 0 if allow_zero else value > 0
    if not ok or math.isnan(value):
        raise ValueError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, got {value!r}.")
    return float(value)


def _check_on_max_steps(value: str) -> OnMaxSteps:
    if value not in ("raise", "return"):
        raise ValueError(f"on_max_steps must be 'raise' or 'return', got {value!r}.")
    return value  # type: ignore[return-value]


def _all_finite(leaves: tuple[Tensor, ...]) -> bool:
    if len(leaves) == 1:
        return bool(torch.isfinite(leaves[0]).all())
    return all(bool(torch.isfinite(x).all()) for x in leaves)


class _Problem:
    """The right-hand side on tuples of leaves, counting evaluations."""

    def __init__(self, func: Dynamics, y0: State, t: Tensor) -> None:
        self.func = func
        self.single = not isinstance(y0, tuple)
        self.leaves = as_tuple(y0)
        self.tdtype = t.dtype
        self.device = t.device
        self.nfe = 0
        self.checked = False

    def __call__(self, t: float, y: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
        self.nfe += 1
        tt = torch.full((), t, dtype=self.tdtype, device=self.device)
        out = self.func(tt, y[0] if self.single else y)
        leaves = (out,) if self.single else out
        if not self.checked:
            self._check(out, leaves)
        return leaves  # type: ignore[return-value]

    def _check(self, out: object, leaves: object) -> None:
        want = "a tensor" if self.single else f"a tuple of {len(self.leaves)} tensors"
        if self.single and not isinstance(out, Tensor):
            raise TypeError(f"func(t, y) must return {want} like y0, got {type(out).__name__}.")
        if not self.single and (not isinstance(leaves, tuple) or len(leaves) != len(self.leaves)):
            raise TypeError(f"func(t, y) must return {want} like y0, got {type(out).__name__}.")
        for i, (a, b) in enumerate(zip(leaves, self.leaves, strict=True)):  # type: ignore[arg-type]
            if not isinstance(a, Tensor) or a.shape != b.shape:
                got = tuple(a.shape) if isinstance(a, Tensor) else type(a).__name__
                raise ValueError(
                    f"func(t, y) returned leaf {i} of shape {got}, but the state leaf has shape "
                    f"{tuple(b.shape)}; the derivative must have the state's shape."
                )
        self.checked = True


class _PlainSteps:
    """Steps recorded by autograd as they are computed (the ``integrate`` path).

    The same interface as :class:`~flowkit.rk.checkpointed.CheckpointedSteps`:
    :meth:`trial` computes a step, :meth:`accept` returns ``(y1, f1, dense
    states)`` of an accepted one, :meth:`evaluate` evaluates the field.
    """

    def __init__(self, tableau: ButcherTableau, problem: _Problem) -> None:
        self.tableau = tableau
        self.evaluate = problem

    def trial(
        self, t: float, y: tuple[Tensor, ...], f0: tuple[Tensor, ...] | None, h: float
    ) -> StepResult:
        return rk_step(self.tableau, self.evaluate, t, y, f0, h)

    def accept(
        self,
        t: float,
        y: tuple[Tensor, ...],
        f0: tuple[Tensor, ...] | None,
        h: float,
        res: StepResult,
        thetas: Sequence[float],
    ) -> tuple[tuple[Tensor, ...], tuple[Tensor, ...] | None, list[tuple[Tensor, ...]]]:
        dense = [dense_state(self.tableau, y, res.ks, h, th) for th in thetas]
        return res.y1, res.f1, dense


class RungeKuttaIntegrator(Integrator):
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
        self, problem: _Problem, params: tuple[Tensor, ...] | None, stats: SolverStats
    ) -> _PlainSteps | CheckpointedSteps:
        if params is None:
            return _PlainSteps(self.tableau, problem)
        return CheckpointedSteps(self.tableau, problem, params, stats)

    @staticmethod
    def _start(func: Dynamics, y0: State, t: Tensor) -> tuple[_Problem, list[float]]:
        problem = _Problem(func, y0, t)
        if not _all_finite(problem.leaves):
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


class FixedStepRungeKutta(RungeKuttaIntegrator):
    """A fixed-step explicit Runge-Kutta method.

    Every interval between consecutive output times is divided into equal
    steps no longer than the step size, so output times are hit exactly.

    Arguments:
        step_size: the largest step (positive; its sign follows the time
            direction). Exclusive with ``n_steps``.
        n_steps: the number of equal steps across the whole span ``t[0]..t[-1]``
            (default 100 when ``step_size`` is not given).
        max_steps: a budget on the total number of steps (default: none; the
            number is known before the solve starts).
        on_max_steps: ``"raise"`` (default) or ``"return"`` the partial solution.

    Raises:
        TypeError: for an unknown option.
        ValueError: for both ``step_size`` and ``n_steps``, or invalid values.
    """

    adaptive: ClassVar[bool] = False

    def __init__(
        self,
        *,
        step_size: float | None = None,
        n_steps: int | None = None,
        max_steps: int | None = None,
        on_max_steps: OnMaxSteps = "raise",
    ) -> None:
        if step_size is not None and n_steps is not None:
            raise ValueError(
                f"give either step_size or n_steps, not both (got step_size={step_size!r}, "
                f"n_steps={n_steps!r})."
            )
        self.step_size = _positive("step_size", step_size)
        if n_steps is not None and (
            isinstance(n_steps, bool) or not isinstance(n_steps, int) or n_steps < 1
        ):
            raise ValueError(f"n_steps must be a positive integer, got {n_steps!r}.")
        self.n_steps = 100 if (n_steps is None and step_size is None) else n_steps
        if max_steps is not None and (not isinstance(max_steps, int) or max_steps < 1):
            raise ValueError(f"max_steps must be a positive integer or None, got {max_steps!r}.")
        self.max_steps = max_steps
        self.on_max_steps = _check_on_max_steps(on_max_steps)

    def _substeps(self, times: list[float]) -> list[int]:
        span = abs(times[-1] - times[0])
        h = self.step_size if self.step_size is not None else span / self.n_steps  # type: ignore[operator]
        counts = []
        for a, b in itertools.pairwise(times):
            r = abs(b - a) / h
            near = round(r)
            counts.append(max(1, near if abs(r - near) <= 1e-9 * max(1.0, r) else math.ceil(r)))
        return counts

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
        for i, m in enumerate(self._substeps(times), start=1):
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
                if not _all_finite(y):
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


class AdaptiveRungeKutta(RungeKuttaIntegrator):
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
            :class:`~flowkit.rk.control.PIController`.

    Raises:
        TypeError: for an unknown option or a wrongly typed value.
        ValueError: for invalid values, including ``rtol`` and ``atol`` both 0.
    """

    adaptive: ClassVar[bool] = True

    def __init__(
        self,
        *,
        rtol: float | Tensor | tuple[float | Tensor, ...] = 1e-7,
        atol: float | Tensor | tuple[float | Tensor, ...] = 1e-9,
        first_step: float | None = None,
        min_step: float = 0.0,
        max_step: float | None = None,
        max_steps: int = 100_000,
        on_max_steps: OnMaxSteps = "raise",
        norm: ErrorNorm | None = None,
        controller_beta: float = 0.0,
    ) -> None:
        self.rtol = _validate_tol("rtol", rtol)
        self.atol = _validate_tol("atol", atol)
        validate_tolerance_pair(self.rtol, self.atol)
        self.first_step = _positive("first_step", first_step)
        self.min_step = _positive("min_step", min_step, allow_zero=True) or 0.0
        self.max_step = _positive("max_step", max_step) or math.inf
        if self.first_step is not None and self.first_step < self.min_step:
            raise ValueError(f"first_step={first_step} is below min_step={min_step}.")
        if self.max_step < self.min_step:
            raise ValueError(f"max_step={max_step} is below min_step={min_step}.")
        if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1:
            raise ValueError(f"max_steps must be a positive integer, got {max_steps!r}.")
        self.max_steps = max_steps
        self.on_max_steps = _check_on_max_steps(on_max_steps)
        if norm is not None and not callable(norm):
            raise TypeError(f"norm must be callable, got {type(norm).__name__}.")
        self.norm: ErrorNorm = norm or mixed_rms_norm
        beta = _positive("controller_beta", controller_beta, allow_zero=True) or 0.0
        if beta >= 0.5:
            raise ValueError(f"controller_beta must be below 0.5, got {controller_beta!r}.")
        self.controller_beta = beta

    def _ratio(self, res: StepResult, tol: Tolerance, y: tuple[Tensor, ...]) -> float:
        with torch.no_grad():
            y1 = tuple(x.detach() for x in res.y1)
            e = float(self.norm(tol.scaled(res.err, y, y1)))  # type: ignore[arg-type]
            if res.err2 is None:
                return e
            e3 = float(self.norm(tol.scaled(res.err2, y, y1)))
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
            if not _all_finite(tuple(x.detach() for x in (*y, *checked))):
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
