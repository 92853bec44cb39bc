"""``flowkit.odeint``: a drop-in replacement for ``torchdiffeq.odeint``.

Same call and result shapes as torchdiffeq (``func(t, y)``, ``y0`` a tensor or
a tuple, ``t`` a 1-D tensor, states stacked along a new first axis), but any
registered integrator and gradient strategy is accepted by name, and the whole
solve goes through :func:`flowkit.solve.solve`. A torchdiffeq user switches by
changing one import::

    from flowkit import odeint            # instead of: from torchdiffeq import odeint
    ys = odeint(func, y0, t, method="dopri5", rtol=1e-5, atol=1e-7)

To read the statistics (function evaluations, accepted and rejected steps),
call :func:`odeint_solution`, which takes the same arguments and returns the
:class:`~flowkit.solution.Solution` instead of the bare states.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import Tensor

from flowkit.registry import Registry, get_registry
from flowkit.solution import Solution
from flowkit.solve import solve
from flowkit.state import Dynamics, State

__all__ = ["odeint", "odeint_solution"]


def odeint_solution(
    func: Dynamics,
    y0: State,
    t: Tensor | Sequence[float],
    *,
    method: str = "dopri5",
    gradient: str = "backprop",
    rtol: float | Tensor | None = None,
    atol: float | Tensor | None = None,
    options: dict[str, Any] | None = None,
    gradient_options: dict[str, Any] | None = None,
    params: Sequence[Tensor] | None = None,
    registry: Registry | None = None,
) -> Solution:
    """Like :func:`odeint`, returning the full :class:`~flowkit.solution.Solution`.

    Arguments:
        func, y0, t, method, gradient, rtol, atol, options, registry: as in :func:`odeint`.
        gradient_options: options of the gradient strategy.
        params: tensors ``func`` depends on that need gradients (default: the
            parameters of ``func`` when it is an ``nn.Module``).
        registry: the registry to resolve ``method`` and ``gradient`` in
            (default: the global one).

    Returns:
        The states at ``t`` (``solution.ys``) and statistics (``solution.stats``).

    Raises:
        UnknownComponentError: for an unknown method or gradient name.
        TypeError: for ``rtol``/``atol`` given to an integrator that takes no
            tolerances, or an unknown option, naming the valid ones.
    """
    integrator_options = dict(options or {})
    registry = registry if registry is not None else get_registry()
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
        if name in integrator_options:
            raise TypeError(f"{name} is given twice: as an argument and in options.")
        integrator_options[name] = value
    return solve(
        func,
        y0,
        t,
        integrator=method,
        gradient=gradient,
        params=params,
        integrator_options=integrator_options,
        gradient_options=gradient_options,
        registry=registry,
    )


def odeint(
    func: Dynamics,
    y0: State,
    t: Tensor | Sequence[float],
    *,
    method: str = "dopri5",
    gradient: str = "backprop",
    rtol: float | Tensor | None = None,
    atol: float | Tensor | None = None,
    options: dict[str, Any] | None = None,
    registry: Registry | None = None,
) -> State:
    """Solve ``dy/dt = func(t, y)`` and return the states at the times ``t``.

    Arguments:
        func: the right-hand side ``func(t, y)``.
        y0: the initial state at ``t[0]``: a tensor or a tuple of tensors.
        t: a 1-D tensor of strictly increasing or decreasing times.
        method: a registered integrator name (``flowkit list integrators``),
            e.g. ``"dopri5"``, ``"rk4"``, ``"torchdiffeq.dopri5"``.
        gradient: a registered gradient-strategy name (default ``"backprop"``).
        rtol, atol: tolerances, for integrators that take them (default: the
            integrator's own, 1e-7 and 1e-9 for the native adaptive ones).
        options: further integrator options (e.g. ``{"step_size": 0.1}``).
        registry: the registry to resolve ``method`` and ``gradient`` in
            (default: the global one, built on first use).

    Returns:
        A tensor of shape ``(len(t), *y0.shape)``, or a tuple of such tensors
        when ``y0`` is a tuple. Gradients reach ``y0``, the parameters of
        ``func`` and, when ``t`` requires grad, the times, for every method and
        gradient strategy (as torchdiffeq's ``t.grad``).

    Raises:
        ValueError: for ``rtol`` and ``atol`` both 0, or invalid times.
        TypeError: for half-precision (float16, bfloat16) times; pass them in
            float32 or float64 (Python times for a half-precision state are
            built in float32).
        PluginContractError: when the integrator returns states that break its
            contract (no time axis, wrong dtype or device, NaN or Inf).

    Example:
        >>> import torch
        >>> from flowkit import odeint
        >>> y = odeint(lambda t, y: -y, torch.tensor([1.0]), torch.tensor([0.0, 1.0]))
        >>> round(float(y[-1]), 6)
        0.367879
    """
    return odeint_solution(
        func,
        y0,
        t,
        method=method,
        gradient=gradient,
        rtol=rtol,
        atol=atol,
        options=options,
        registry=registry,
    ).ys
