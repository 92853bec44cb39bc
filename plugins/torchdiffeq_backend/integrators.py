"""The torchdiffeq integrator classes: the contract, the two option bases, the statistics.

:class:`TorchdiffeqIntegrator` runs one torchdiffeq method (``torchdiffeq.odeint``,
or ``odeint_adjoint`` for the native adjoint path) and maps torchdiffeq's
failures onto flowkit's errors; :class:`TorchdiffeqAdaptive` and
:class:`TorchdiffeqFixedStep` declare the options through flowkit's option
bases. The per-method classes are generated at registration (see
:mod:`flowkit.plugins.torchdiffeq_backend`).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any, ClassVar, Self

import torch
from torch import Tensor, nn

from flowkit.errors import (
    MaxStepsExceededError,
    NonFiniteStateError,
    StepSizeUnderflowError,
)
from flowkit.interfaces import (
    AdaptiveIntegrator,
    FixedStepIntegrator,
    Integrator,
    SupportsNativeAdjoint,
)
from flowkit.rk.control import ErrorNorm
from flowkit.solution import Solution, SolverStats
from flowkit.state import Dynamics, State, as_tuple

__all__ = ["TorchdiffeqAdaptive", "TorchdiffeqFixedStep", "TorchdiffeqIntegrator"]

TORCHDIFFEQ_MAX_NUM_STEPS = 2**31 - 1
"""torchdiffeq's default ``max_num_steps``."""


def _given(value: Any, default: Any) -> Any:
    """``value``, or ``default`` when it is None (0 stays 0, to be validated)."""
    return default if value is None else value


class _CountingFunc(nn.Module):
    """Wraps the field: counts evaluations and receives torchdiffeq's step callbacks."""

    def __init__(self, func: Dynamics, stats: SolverStats) -> None:
        super().__init__()
        self.func = func
        self.stats = stats
        self.backward = False
        self.last_t: Tensor | None = None

    def forward(self, t: Tensor, y: State) -> State:
        if self.backward:
            self.stats.backward_nfe += 1
        else:
            self.stats.nfe += 1
            self.last_t = t.detach()
        out = self.func(t, y)
        self.last_out = out
        return out

    def user_callback(self, name: str, t0: Tensor, y0: State, dt: Tensor) -> None:
        """Call the field's own torchdiffeq callback ``name``, if it has one."""
        callback = getattr(self.func, name, None)
        if callable(callback):
            callback(t0, y0, dt)

    def last_output_finite(self) -> bool:
        """Whether the field's last output was finite (checked only on failure)."""
        out = getattr(self, "last_out", None)
        if out is None:
            return True
        with torch.no_grad():
            return all(bool(torch.isfinite(x).all()) for x in as_tuple(out))


class _CountingFixedFunc(_CountingFunc):
    """For fixed-grid methods: every step is an accepted step."""

    def callback_step(self, t0: Tensor, y0: State, dt: Tensor) -> None:
        self.stats.n_accepted += 1
        self._dt = dt
        self.user_callback("callback_step", t0, y0, dt)


class _CountingAdaptiveFunc(_CountingFunc):
    """For adaptive methods: accepted and rejected steps, forward and adjoint.

    The field's own callbacks of the same names are called after counting.
    """

    def callback_step(self, t0: Tensor, y0: State, dt: Tensor) -> None:
        self.user_callback("callback_step", t0, y0, dt)

    def callback_accept_step(self, t0: Tensor, y0: State, dt: Tensor) -> None:
        self.stats.n_accepted += 1
        self._dt = dt
        self.user_callback("callback_accept_step", t0, y0, dt)

    def callback_reject_step(self, t0: Tensor, y0: State, dt: Tensor) -> None:
        self.stats.n_rejected += 1
        self.user_callback("callback_reject_step", t0, y0, dt)

    def callback_step_adjoint(self, t0: Tensor, y0: State, dt: Tensor) -> None:
        self.user_callback("callback_step_adjoint", t0, y0, dt)

    def callback_accept_step_adjoint(self, t0: Tensor, y0: State, dt: Tensor) -> None:
        self.stats.backward_n_accepted += 1
        self.user_callback("callback_accept_step_adjoint", t0, y0, dt)

    def callback_reject_step_adjoint(self, t0: Tensor, y0: State, dt: Tensor) -> None:
        self.stats.backward_n_rejected += 1
        self.user_callback("callback_reject_step_adjoint", t0, y0, dt)


class TorchdiffeqIntegrator(Integrator, SupportsNativeAdjoint):
    """One torchdiffeq method behind the flowkit integrator contract.

    Subclasses (one per method, generated at registration) set ``method``,
    ``order``, ``adaptive`` and ``valid_options``, and derive from
    :class:`TorchdiffeqAdaptive` or :class:`TorchdiffeqFixedStep`, which
    declare the options through flowkit's option bases. Every method offers
    torchdiffeq's own adjoint (:class:`~flowkit.interfaces.SupportsNativeAdjoint`).

    Arguments:
        **options: the options of the method; see the two subclasses.

    Raises:
        TypeError: for an option the method does not take, naming the valid ones.
    """

    method: ClassVar[str] = ""
    valid_options: ClassVar[frozenset[str]] = frozenset()
    step_callbacks: ClassVar[bool] = False
    native_adjoint: ClassVar[bool] = True

    def _check_names(self, options: dict[str, Any]) -> None:
        unknown = sorted(set(options) - self.valid_options)
        if unknown:
            raise TypeError(
                f"Unknown option(s) {', '.join(map(repr, unknown))} for integrator "
                f"'torchdiffeq.{self.method}'. Valid options: "
                f"{', '.join(sorted(self.valid_options))}."
            )

    def _options(self) -> dict[str, Any]:
        """The ``options`` dictionary handed to torchdiffeq."""
        return dict(self.options)

    def _wrap(self, func: Dynamics, stats: SolverStats) -> _CountingFunc:
        if self.adaptive:
            return _CountingAdaptiveFunc(func, stats)
        if self.step_callbacks:
            return _CountingFixedFunc(func, stats)
        return _CountingFunc(func, stats)

    def _kwargs(self) -> dict[str, Any]:
        return {
            "rtol": self.rtol,
            "atol": self.atol,
            "method": self.method,
            "options": self._options(),
        }

    def integrate(self, func: Dynamics, y0: State, t: Tensor) -> Solution:
        """Solve with ``torchdiffeq.odeint``; see :class:`~flowkit.interfaces.Integrator`."""
        import torchdiffeq

        stats = SolverStats()
        wrapped = self._wrap(func, stats)
        ys = self._call(lambda: torchdiffeq.odeint(wrapped, y0, t, **self._kwargs()), wrapped, t)
        return self._finish(ys, t, stats, wrapped)

    def integrate_native_adjoint(
        self, func: Dynamics, y0: State, t: Tensor, params: Sequence[Tensor]
    ) -> Solution:
        """Solve with ``torchdiffeq.odeint_adjoint`` (``adjoint_params=params``).

        Gradients reach ``y0`` and ``params``; the backward solve's counts
        appear in ``stats.backward_*`` once it has run.
        """
        import torchdiffeq

        stats = SolverStats()
        wrapped = self._wrap(func, stats)
        ys = self._call(
            lambda: torchdiffeq.odeint_adjoint(
                wrapped, y0, t, adjoint_params=tuple(params), **self._kwargs()
            ),
            wrapped,
            t,
        )
        return self._finish(ys, t, stats, wrapped)

    def _call(self, run: Any, wrapped: _CountingFunc, t: Tensor) -> State:
        try:
            return run()
        except AssertionError as exc:
            reached = float(wrapped.last_t) if wrapped.last_t is not None else float(t[0])
            text = str(exc)
            span = f"(integrating from {float(t[0])!r} to {float(t[-1])!r})"
            if "max_num_steps" in text:
                raise MaxStepsExceededError(
                    f"torchdiffeq.{self.method} exhausted its step budget ({text}) near "
                    f"t={reached!r} {span}. Raise the max_num_steps option or loosen the "
                    "tolerances.",
                    t=reached,
                ) from exc
            nonfinite = "underflow" in text and not wrapped.last_output_finite()
            if ("underflow" in text and "nan" in text.lower()) or "non-finite" in text or nonfinite:
                raise NonFiniteStateError(
                    f"torchdiffeq.{self.method}: NaN or Inf in the state or the field's output "
                    f"near t={reached!r} {span}; check the vector field for overflow.",
                    t=reached,
                ) from exc
            if "underflow" in text:
                raise StepSizeUnderflowError(
                    f"torchdiffeq.{self.method}: step size underflow near t={reached!r} {span}. "
                    "Remedies: loosen rtol/atol, use a stiff-capable (implicit) method, or "
                    "integrate over a smaller time span.",
                    t=reached,
                ) from exc
            raise

    def _finish(self, ys: State, t: Tensor, stats: SolverStats, wrapped: _CountingFunc) -> Solution:
        with torch.no_grad():
            bad = None
            for leaf in as_tuple(ys):
                ok = torch.isfinite(leaf.reshape(leaf.shape[0], -1)).all(dim=1)
                if not bool(ok.all()):
                    first = int((~ok).nonzero()[0])
                    bad = first if bad is None else min(bad, first)
        if bad is not None:
            at = float(t[bad])
            raise NonFiniteStateError(
                f"torchdiffeq.{self.method}: NaN or Inf in the state at output time t={at!r}; "
                "check the vector field for overflow, or use smaller steps.",
                t=at,
            )
        dt = getattr(wrapped, "_dt", None)
        stats.final_step_size = None if dt is None else abs(float(dt))
        stats.t_reached = float(t[-1])
        wrapped.backward = True
        return Solution(ts=t, ys=ys, stats=stats)


class TorchdiffeqAdaptive(TorchdiffeqIntegrator, AdaptiveIntegrator):
    """An adaptive torchdiffeq method, declaring :class:`~flowkit.interfaces.AdaptiveIntegrator`.

    Options: ``rtol``, ``atol`` (default 1e-7/1e-9, as torchdiffeq),
    ``first_step``, ``min_step``, ``max_step``, ``norm`` (validated by the
    base and handed to torchdiffeq), ``max_num_steps`` (torchdiffeq's name
    for the base's ``max_steps``, default ``2**31 - 1`` as torchdiffeq) and
    torchdiffeq's own step-control options (``safety``, ``ifactor``,
    ``dfactor``, ``step_t``, ``jump_t``, ``dtype``). Without ``norm``,
    torchdiffeq's own default norm is used, the same largest per-leaf RMS as
    :func:`~flowkit.rk.control.mixed_rms_norm`.
    """

    def __init__(self, **options: Any) -> None:
        self._check_names(options)
        norm = options.pop("norm", None)
        AdaptiveIntegrator.__init__(
            self,
            rtol=options.pop("rtol", 1e-7),
            atol=options.pop("atol", 1e-9),
            first_step=options.pop("first_step", None),
            min_step=_given(options.pop("min_step", None), 0.0),
            max_step=options.pop("max_step", None),
            max_steps=_given(options.pop("max_num_steps", None), TORCHDIFFEQ_MAX_NUM_STEPS),
            norm=norm,
        )
        self._own_norm = norm is not None
        self.options = {k: v for k, v in options.items() if v is not None}

    def with_norm(self, norm: ErrorNorm) -> Self:
        """A shallow copy that hands ``norm`` to torchdiffeq."""
        clone = super().with_norm(norm)
        clone._own_norm = True
        return clone

    def _options(self) -> dict[str, Any]:
        options = dict(self.options)
        if self.first_step is not None:
            options["first_step"] = self.first_step
        if self.min_step > 0:
            options["min_step"] = self.min_step
        if self.max_step < math.inf:
            options["max_step"] = self.max_step
        options["max_num_steps"] = self.max_steps
        if self._own_norm:
            options["norm"] = self.norm
        return options


class TorchdiffeqFixedStep(TorchdiffeqIntegrator, FixedStepIntegrator):
    """A fixed-grid torchdiffeq method, declaring :class:`~flowkit.interfaces.FixedStepIntegrator`.

    ``step_size`` and ``n_steps`` mean what they mean for every fixed-step
    integrator: the grid handed to torchdiffeq splits each interval between
    output times into the equal steps of
    :meth:`~flowkit.interfaces.FixedStepIntegrator.step_counts` (so output
    times are grid points, never interpolated), default 100 steps across the
    span. torchdiffeq's own ``grid_constructor`` replaces that grid
    (exclusive with ``step_size``/``n_steps``); ``perturb`` and ``interp``
    are passed through.
    """

    def __init__(self, **options: Any) -> None:
        self._check_names(options)
        step_size = options.pop("step_size", None)
        n_steps = options.pop("n_steps", None)
        grid = options.get("grid_constructor")
        if grid is not None and (step_size is not None or n_steps is not None):
            raise ValueError(
                f"torchdiffeq.{self.method}: give grid_constructor or step_size/n_steps, not both."
            )
        FixedStepIntegrator.__init__(self, step_size=step_size, n_steps=n_steps)
        self.rtol, self.atol = 1e-7, 1e-9
        self.options = {k: v for k, v in options.items() if v is not None}

    def _grid(self, func: Any, y0: Tensor, t: Tensor) -> Tensor:
        times = [float(x) for x in t.tolist()]
        pieces = [
            torch.linspace(float(a), float(b), m + 1, dtype=t.dtype, device=t.device)[:-1]
            for (a, b), m in zip(itertools.pairwise(t), self.step_counts(times), strict=True)
        ]
        return torch.cat([*pieces, t[-1:]])

    def _options(self) -> dict[str, Any]:
        options = dict(self.options)
        if "grid_constructor" not in options:
            options["grid_constructor"] = self._grid
        return options
