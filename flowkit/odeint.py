"""``flowkit.odeint``: a drop-in replacement for ``torchdiffeq.odeint``.

Same call and result shapes as torchdiffeq (``func(t, y)``, ``y0`` a tensor or
a tuple, ``t`` a 1-D tensor, states stacked along a new first axis), the same
method names with the same meaning (:mod:`flowkit.odeint_methods`), the same
handling of times, complex states, callbacks and parameters
(:mod:`flowkit.odeint_options`); any registered integrator and gradient
strategy is accepted by name too, and the whole solve goes through
:func:`flowkit.solve.solve`. A torchdiffeq user switches by changing one
import::

    from flowkit import odeint, odeint_adjoint   # instead of: from torchdiffeq import ...
    ys = odeint(func, y0, t, method="dopri5", rtol=1e-5, atol=1e-7)

Where flowkit differs from torchdiffeq, on purpose: an unknown option, and
``rtol``/``atol`` given to a fixed-step method, raise (torchdiffeq warns or
ignores them); ``t.grad`` is the continuous-time sensitivity
``dL/dy(t_i) . f(t_i, y(t_i))`` (exact for the ODE, equal to torchdiffeq's to
the solver's accuracy; torchdiffeq differentiates its discrete steps, which
for a fixed-step solve differs by the discretisation error).

To read the statistics (function evaluations, accepted and rejected steps),
call :func:`odeint_solution`, which takes the same arguments and returns the
:class:`~flowkit.solution.Solution` instead of the bare states.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from flowkit.interfaces import GradientStrategy, Integrator
from flowkit.odeint_methods import UNREGISTERED, resolve_method
from flowkit.odeint_options import (
    ComplexState,
    cast_times,
    initial_only,
    needs_adjoint_params,
    warn_unsupported_callbacks,
)
from flowkit.odeint_torchdiffeq import TorchdiffeqMethod
from flowkit.registry import Registry, get_registry
from flowkit.solution import Solution, SolverStats
from flowkit.solve import check_times, solve
from flowkit.state import Dynamics, State, as_tuple, check_state

__all__ = ["build_integrator", "integrator_options", "odeint", "odeint_solution"]

_BACKPROP = "backprop"


def integrator_options(
    registry: Registry,
    method: str,
    options: dict[str, Any],
    rtol: float | Tensor | None,
    atol: float | Tensor | None,
) -> dict[str, Any]:
    """``options`` with ``rtol``/``atol`` added, for a method that takes them.

    Raises:
        TypeError: for a tolerance given to a fixed-step method, or given twice.
    """
    out = dict(options)
    spec = registry.get("integrator", method)
    for name, value in (("rtol", rtol), ("atol", atol)):
        if value is None:
            continue
        if not spec.capabilities["adaptive"]:
            raise TypeError(
                f"Integrator {spec.name!r} takes no {name} (it is not adaptive); remove {name}, "
                "or choose an adaptive method such as 'dopri5'. A fixed-step integrator takes "
                "step_size or n_steps instead."
            )
        if name in out:
            raise TypeError(f"{name} is given twice: as an argument and in options.")
        out[name] = value
    return out


def build_integrator(
    registry: Registry,
    name: str,
    options: dict[str, Any],
    rtol: float | Tensor | None,
    atol: float | Tensor | None,
) -> tuple[str | Integrator, dict[str, Any] | None]:
    """The integrator for a resolved method name: the name and its options, or,
    for a torchdiffeq method no plugin registers, a
    :class:`~flowkit.odeint_torchdiffeq.TorchdiffeqMethod` (options ``None``).

    Raises:
        TypeError: for an unknown option or a misplaced tolerance.
    """
    short = name.removeprefix("torchdiffeq.")
    if short != name and short in UNREGISTERED and ("integrator", name) not in registry:
        tolerances = {k: v for k, v in (("rtol", rtol), ("atol", atol)) if v is not None}
        return TorchdiffeqMethod(short, **tolerances, **options), None
    return name, integrator_options(registry, name, options, rtol, atol)


def _needs_gradients(func: Dynamics, y0: State, t: object, params: object) -> bool:
    """Whether a solve under grad mode must give gradients (to what flowkit can see)."""
    if not torch.is_grad_enabled():
        return False
    owner = func if isinstance(func, torch.nn.Module) else getattr(func, "__self__", None)
    tensors = [*as_tuple(y0), *(params or ()), *([t] if isinstance(t, Tensor) else [])]
    if isinstance(owner, torch.nn.Module):
        tensors += list(owner.parameters())
    return any(x.requires_grad for x in tensors)


def _uses_params(gradient: str | GradientStrategy, registry: Registry) -> bool:
    """Whether the strategy differentiates with respect to parameters it must be told."""
    if isinstance(gradient, str):
        return registry.get("gradient_strategy", gradient).name != _BACKPROP
    return getattr(gradient, "params", ()) is None


def _single_time(t: object) -> bool:
    if isinstance(t, Tensor):
        return t.dim() == 1 and t.numel() == 1
    return isinstance(t, Sequence) and len(t) == 1


def odeint_solution(
    func: Dynamics,
    y0: State,
    t: Tensor | Sequence[float],
    *,
    rtol: float | Tensor | None = None,
    atol: float | Tensor | None = None,
    method: str | None = None,
    options: dict[str, Any] | None = None,
    event_fn: Any = None,
    gradient: str | GradientStrategy = _BACKPROP,
    adjoint_params: Sequence[Tensor] | None = None,
    gradient_options: dict[str, Any] | None = None,
    registry: Registry | None = None,
) -> Solution:
    """Like :func:`odeint`, returning the full :class:`~flowkit.solution.Solution`.

    Arguments:
        func, y0, t, rtol, atol, method, options, event_fn, gradient,
        adjoint_params, registry: as in :func:`odeint`.
        gradient_options: options of the gradient strategy given by name.

    Returns:
        The states at ``t`` (``solution.ys``) and statistics (``solution.stats``).

    Raises:
        As :func:`odeint`.
    """
    if event_fn is not None:
        raise TypeError(
            "odeint_solution takes no event_fn: an event solve returns (event_t, states), "
            "not a Solution; call flowkit.odeint(..., event_fn=...) or flowkit.odeint_event."
        )
    registry = registry if registry is not None else get_registry()
    warn_unsupported_callbacks(func, method)
    complex_state = ComplexState(y0)
    y_real = check_state(complex_state.y0)
    t = cast_times(t, y0)
    if _single_time(t):
        return Solution(ts=t, ys=initial_only(y0), stats=SolverStats())  # type: ignore[arg-type]
    times = check_times(t, y_real)
    name, options_ = resolve_method(method, dict(options or {}), func=func, y0=y0, t=times)
    integrator, options_ = build_integrator(registry, name, options_, rtol, atol)
    detached = isinstance(integrator, TorchdiffeqMethod) and integrator.method == "scipy_solver"
    backprop = not _uses_params(gradient, registry)
    if detached and backprop and _needs_gradients(func, y0, times, adjoint_params):
        gradient = "adjoint"  # scipy returns no graph: gradients through the adjoint
    owner = getattr(func, "__self__", func)
    if _uses_params(gradient, registry):
        needs_adjoint_params(owner, adjoint_params)
    if complex_state.active and adjoint_params is None and isinstance(owner, torch.nn.Module):
        adjoint_params = tuple(owner.parameters())  # the real-pair wrapper is no Module
    solution = solve(
        complex_state.func(func),
        y_real,
        times,
        integrator=integrator,
        gradient=gradient,
        params=adjoint_params,
        integrator_options=options_,
        gradient_options=gradient_options,
        registry=registry,
    )
    if complex_state.active:
        solution = Solution(
            ts=solution.ts, ys=complex_state.restore(solution.ys), stats=solution.stats
        )
    return solution


def odeint(
    func: Dynamics,
    y0: State,
    t: Tensor | Sequence[float],
    *,
    rtol: float | Tensor | None = None,
    atol: float | Tensor | None = None,
    method: str | None = None,
    options: dict[str, Any] | None = None,
    event_fn: Any = None,
    gradient: str | GradientStrategy = _BACKPROP,
    adjoint_params: Sequence[Tensor] | None = None,
    registry: Registry | None = None,
) -> State:
    """Solve ``dy/dt = func(t, y)`` and return the states at the times ``t``.

    Arguments:
        func: the right-hand side ``func(t, y)``; torchdiffeq's step callbacks
            (``callback_step``, ``callback_accept_step``,
            ``callback_reject_step``) defined on it are called as torchdiffeq
            calls them.
        y0: the initial state at ``t[0]``: a tensor or a tuple of tensors,
            real or complex (solved as pairs of reals).
        t: a 1-D tensor of strictly increasing or decreasing times, cast to
            the state's dtype; a single time returns ``y0`` stacked.
        rtol, atol: tolerances, for integrators that take them (default: the
            integrator's own, 1e-7 and 1e-9 as torchdiffeq).
        method: a torchdiffeq method name, meaning torchdiffeq's method (see
            :mod:`flowkit.odeint_methods`: ``"rk4"`` is the 3/8 rule), or any
            other registered integrator name (``flowkit list integrators``),
            e.g. ``"tsit5"``, ``"torchdiffeq.dopri8"``; default ``"dopri5"``.
        options: the method's options: torchdiffeq's for a torchdiffeq name
            (e.g. ``{"step_size": 0.1}``, ``{"norm": f}``, ``{"jump_t": ts}``),
            flowkit's for the others. Unknown options raise.
        event_fn: as in torchdiffeq: solve from ``t[0]`` until ``event_fn(t, y)``
            reaches zero and return ``(event_t, states at [t[0], event_t])``
            instead of the states at ``t`` (:func:`flowkit.odeint_event`, whose
            event time is differentiable; torchdiffeq's plain ``odeint`` event
            time is not).
        gradient: a registered gradient-strategy name or instance (default
            ``"backprop"``; ``"adjoint"`` for flowkit's continuous adjoint).
        adjoint_params: the tensors ``func`` depends on, for a gradient
            strategy other than backprop (default: the parameters of ``func``
            when it is an ``nn.Module``).
        registry: the registry to resolve ``method`` and ``gradient`` in
            (default: the global one, built on first use).

    Returns:
        A tensor of shape ``(len(t), *y0.shape)``, or a tuple of such tensors
        when ``y0`` is a tuple, in ``y0``'s dtype. Gradients reach ``y0``,
        the parameters of ``func`` and, when ``t`` requires grad, the times,
        for every method and gradient strategy.

    Raises:
        ValueError: for a gradient strategy other than backprop with a
            ``func`` that is not an ``nn.Module`` and no ``adjoint_params``
            (as torchdiffeq's ``odeint_adjoint``); for ``rtol`` and ``atol``
            both 0, or invalid times.
        TypeError: for an unknown option, ``rtol``/``atol`` given to a
            fixed-step method, or half-precision (float16, bfloat16) times.
        UnknownComponentError: for an unknown method or gradient name.
        PluginContractError: when the integrator returns states that break its
            contract (no time axis, wrong dtype or device, NaN or Inf).

    Example:
        >>> import torch
        >>> from flowkit import odeint
        >>> y = odeint(lambda t, y: -y, torch.tensor([1.0]), torch.tensor([0.0, 1.0]))
        >>> round(float(y[-1]), 6)
        0.367879
    """
    if event_fn is not None:
        from flowkit.odeint_event import odeint_event  # it calls back into odeint

        t_start = t[0] if isinstance(t, Tensor) and t.dim() > 0 else t
        return odeint_event(  # type: ignore[return-value]
            func,
            y0,
            t_start,  # type: ignore[arg-type]
            event_fn=event_fn,
            rtol=rtol,
            atol=atol,
            method=method,
            options=options,
            gradient=gradient,
            adjoint_params=adjoint_params,
            registry=registry,
        )
    return odeint_solution(
        func,
        y0,
        t,
        rtol=rtol,
        atol=atol,
        method=method,
        options=options,
        gradient=gradient,
        adjoint_params=adjoint_params,
        registry=registry,
    ).ys
