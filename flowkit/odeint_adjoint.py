"""``flowkit.odeint_adjoint``: torchdiffeq's ``odeint_adjoint`` on flowkit's adjoint.

The call of ``torchdiffeq.odeint_adjoint``, argument for argument, run by
flowkit's solver-agnostic ``adjoint`` gradient strategy
(:mod:`flowkit.adjoint`): the forward solve is :func:`flowkit.odeint`'s (same
method names, same options), the backward solve of the augmented system
``(y, a_y, a_params)`` uses ``adjoint_method`` with ``adjoint_rtol``,
``adjoint_atol`` and ``adjoint_options``, each defaulting as in torchdiffeq
(to ``method``, ``rtol``, ``atol`` and ``options`` without its ``norm``).

``adjoint_options={"norm": "seminorm"}`` leaves the parameter adjoint out of
the backward step-size control (Kidger et al. 2021); a callable ``norm`` there
is called as torchdiffeq calls it, with ``(t, y, adj_y, *adj_params)`` (a
tuple state's leaves spread out), where ``t`` is a zero scalar: flowkit's
adjoint integrates no time adjoint, time gradients come from the
sensitivities at the output times (see :mod:`flowkit.solve`).

The function's ``callback_step_adjoint``, ``callback_accept_step_adjoint`` and
``callback_reject_step_adjoint`` are called by the backward solve, as in
torchdiffeq (which then runs on the torchdiffeq backend), with ``(t0, state,
dt)``; ``state`` is flowkit's augmented state ``(*y, *a_y, *a_params)``,
without torchdiffeq's leading time-adjoint entry.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

from torch import Tensor

from flowkit.odeint import build_integrator, odeint
from flowkit.odeint_methods import CALLBACK_NAMES, resolve_method
from flowkit.odeint_options import adjoint_norm_adapter, cast_times, needs_adjoint_params
from flowkit.registry import Registry, get_registry
from flowkit.solve import check_times
from flowkit.state import Dynamics, State

__all__ = ["odeint_adjoint"]


def odeint_adjoint(
    func: Dynamics,
    y0: State,
    t: Tensor | Sequence[float],
    *,
    rtol: float | Tensor | None = None,
    atol: float | Tensor | None = None,
    method: str | None = None,
    options: dict[str, Any] | None = None,
    event_fn: Any = None,
    adjoint_rtol: float | Tensor | None = None,
    adjoint_atol: float | Tensor | None = None,
    adjoint_method: str | None = None,
    adjoint_options: dict[str, Any] | None = None,
    adjoint_params: Sequence[Tensor] | None = None,
    registry: Registry | None = None,
) -> State:
    """Solve like :func:`flowkit.odeint`, with gradients from the continuous adjoint.

    Arguments:
        func, y0, t, rtol, atol, method, options, event_fn, registry: as in
            :func:`flowkit.odeint`.
        adjoint_rtol, adjoint_atol: tolerances of the backward solve (default
            ``rtol``, ``atol``).
        adjoint_method: the backward method, named as ``method`` (default ``method``).
        adjoint_options: options of the backward method (default ``options``
            without ``norm``); ``norm`` may be ``"seminorm"`` or a callable.
        adjoint_params: the tensors ``func`` depends on that receive gradients
            (default: its parameters; required when ``func`` is not an
            ``nn.Module``, ``()`` for none).

    Returns:
        As :func:`flowkit.odeint`; gradients reach ``y0``, ``adjoint_params``
        and ``t``.

    Raises:
        ValueError: for a ``func`` that is not an ``nn.Module`` without
            ``adjoint_params``, and for ``adjoint_method != method`` with
            ``options`` but no ``adjoint_options`` (both as torchdiffeq).
        TypeError: for an unknown option of either method.

    Example:
        >>> import torch
        >>> from flowkit import odeint_adjoint
        >>> k = torch.tensor(1.0, requires_grad=True)
        >>> y = odeint_adjoint(lambda t, y: -k * y, torch.tensor([1.0]),
        ...                    torch.tensor([0.0, 1.0]), adjoint_params=(k,))
        >>> y[-1].sum().backward()
        >>> round(float(k.grad), 5)  # d/dk exp(-k) at k = 1
        -0.36788
    """
    needs_adjoint_params(func, adjoint_params)
    adjoint_rtol = rtol if adjoint_rtol is None else adjoint_rtol
    adjoint_atol = atol if adjoint_atol is None else adjoint_atol
    if adjoint_method is None:
        adjoint_method = method
    if adjoint_method != method and options is not None and adjoint_options is None:
        raise ValueError(
            "If `adjoint_method != method` then we cannot infer `adjoint_options` from "
            "`options`. So as `options` has been passed then `adjoint_options` must be passed "
            "as well."
        )
    if adjoint_options is None:
        adjoint_options = {k: v for k, v in (options or {}).items() if k != "norm"}
    back_options = dict(adjoint_options)
    norm = back_options.pop("norm", None)
    registry = registry if registry is not None else get_registry()
    times = t if isinstance(t, Tensor) and t.numel() < 2 else check_times(cast_times(t, y0), y0)
    hooks = SimpleNamespace(  # the adjoint callbacks are the backward solve's step callbacks
        **{n: getattr(func, f"{n}_adjoint", None) for n in CALLBACK_NAMES}
    )
    name, back_options = resolve_method(adjoint_method, back_options, func=hooks, y0=y0, t=times)
    backward, back_options = build_integrator(
        registry, name, back_options, adjoint_rtol, adjoint_atol
    )
    if isinstance(backward, str):
        backward = registry.create("integrator", backward, **(back_options or {}))
    if callable(norm) and not hasattr(backward, "with_norm"):
        raise TypeError(
            f"adjoint_options['norm'] needs an adaptive adjoint_method; {adjoint_method!r} takes "
            "no norm."
        )
    if callable(norm):
        backward = backward.with_norm(adjoint_norm_adapter(norm))
    elif norm not in (None, "seminorm"):
        raise ValueError(f"adjoint_options['norm'] must be 'seminorm' or a callable, got {norm!r}.")
    strategy = registry.create(
        "gradient_strategy",
        "adjoint",
        backward_integrator=backward,
        seminorm=norm == "seminorm",
        registry=registry,
    )
    return odeint(
        func,
        y0,
        t,
        rtol=rtol,
        atol=atol,
        method=method,
        options=options,
        event_fn=event_fn,
        gradient=strategy,
        adjoint_params=adjoint_params,
        registry=registry,
    )
