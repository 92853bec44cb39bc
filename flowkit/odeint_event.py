"""``flowkit.odeint_event``: torchdiffeq's event call, with a differentiable event time.

The call is torchdiffeq's::

    from flowkit import odeint_event     # instead of: from torchdiffeq import odeint_event
    event_t, ys = odeint_event(func, y0, t0, event_fn=event_fn, atol=1e-8, rtol=1e-8)

It returns the event time ``event_t`` (the first zero of ``event_fn(t, y)``
after ``t0``, or before it with ``reverse_time=True``) and the states
``ys = [y0, y(event_t)]``. The algorithm, and how its gradients come about,
is :func:`flowkit.event_solve.solve_to_event`.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from flowkit.event_search import EventFunction, EventNotFoundError
from flowkit.event_solve import OdeintInterface, solve_to_event
from flowkit.odeint import odeint
from flowkit.state import Dynamics, State

__all__ = ["EventNotFoundError", "odeint_event"]


def odeint_event(
    func: Dynamics,
    y0: State,
    t0: Tensor | float,
    *,
    event_fn: EventFunction,
    reverse_time: bool = False,
    odeint_interface: OdeintInterface = odeint,
    event_tol: float | None = None,
    **kwargs: Any,
) -> tuple[Tensor, State]:
    """Solve ``dy/dt = func(t, y)`` from ``t0`` until ``event_fn(t, y)`` reaches zero.

    Arguments, returns and errors are those of
    :func:`flowkit.event_solve.solve_to_event`; ``odeint_interface`` defaults
    to :func:`flowkit.odeint` (give ``flowkit.odeint_adjoint`` for the adjoint).

    Example:
        >>> import torch
        >>> y0 = torch.tensor([1.0], dtype=torch.float64)
        >>> event_t, ys = odeint_event(
        ...     lambda t, y: -y, y0, torch.tensor(0.0, dtype=torch.float64),
        ...     event_fn=lambda t, y: y[0] - 0.5, rtol=1e-10, atol=1e-10,
        ... )
        >>> round(float(event_t), 8)  # ln 2
        0.69314718
    """
    return solve_to_event(
        func,
        y0,
        t0,
        event_fn=event_fn,
        odeint_interface=odeint_interface,
        reverse_time=reverse_time,
        event_tol=event_tol,
        **kwargs,
    )
