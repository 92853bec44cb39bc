"""``flowkit.odeint_event``: solve until an event, with a differentiable event time.

The call is torchdiffeq's::

    from flowkit import odeint_event     # instead of: from torchdiffeq import odeint_event
    event_t, ys = odeint_event(func, y0, t0, event_fn=event_fn, atol=1e-8, rtol=1e-8)

It returns the event time ``event_t`` (the first zero of ``event_fn(t, y)``
after ``t0``, or before it with ``reverse_time=True``) and the states
``ys = [y0, y(event_t)]`` stacked along a new first axis (a tuple of such
tensors for a tuple state).

How it works:

* The event is located without gradients by :func:`flowkit.event_search.locate_event`,
  which samples the solution through ``odeint_interface`` (so any method that
  interface accepts, with its options) on a grid at least as fine as the
  solver's own steps and refines the bracket to the tolerance (``event_tol``,
  default the ``atol`` given, else 1e-9).
* The state at the event is one more solve from ``t0`` to ``event_t`` through
  ``odeint_interface``, so its gradients (to ``y0``, to ``t0`` and to the
  parameters of ``func``) are those of that interface: backpropagation through
  the solver with :func:`flowkit.odeint`, the adjoint method with
  ``gradient="adjoint"`` or an adjoint interface.
* The event time is made differentiable by the implicit function theorem: from
  ``c(t*, y(t*)) = 0``, ``dt*/dθ = -(dc/dθ)|_t / (∂c/∂t + ∂c/∂y · f(t*, y*))``,
  and the returned state moves with it, ``dy*/dθ = dy/dθ|_t + f(t*, y*) dt*/dθ``
  (torchdiffeq's rule). Unlike torchdiffeq, the parameters of ``event_fn``
  itself (an ``nn.Module`` threshold, say) also receive their gradient.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from flowkit.event_search import (
    EventFunction,
    EventNotFoundError,
    combine_event_functions,
    locate_event,
)
from flowkit.odeint import odeint
from flowkit.state import Dynamics, State, as_tuple, like

__all__ = ["EventNotFoundError", "odeint_event"]

DEFAULT_EVENT_TOL = 1e-9
"""The search's bracket length when neither ``event_tol`` nor a numeric ``atol`` is given."""

OdeintInterface = Callable[..., State]


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

    Arguments:
        func: the right-hand side ``func(t, y)``.
        y0: the initial state at ``t0``: a tensor or a tuple of tensors.
        t0: the initial time, a tensor with one element (or a float); it may
            require grad.
        event_fn: ``event_fn(t, y)``, a tensor; the event is the first time any
            element changes sign (an element that is zero at ``t0`` is an event
            at ``t0``).
        reverse_time: search backward in time from ``t0``.
        odeint_interface: the solver interface (default :func:`flowkit.odeint`);
            any function called as ``odeint_interface(func, y0, t, **kwargs)``.
        event_tol: the accuracy of the event time (default: ``atol`` when it
            is given as a number, else 1e-9); a flowkit extra.
        **kwargs: passed on to ``odeint_interface`` (``rtol``, ``atol``,
            ``method``, ``options``, ``gradient``, ...).

    Returns:
        ``(event_t, ys)``: the event time (a 0-dimensional tensor of ``t0``'s
        dtype) and the states at ``t0`` and at ``event_t`` stacked along a new
        first axis (a tuple of such tensors when ``y0`` is a tuple). Both are
        differentiable with respect to ``y0``, ``t0``, the parameters of
        ``func`` and those of ``event_fn``. When ``event_fn`` is already zero
        at ``t0``, the event is ``t0`` itself and ``ys`` is ``[y0, y0]``.

    Raises:
        EventNotFoundError: when ``event_fn`` keeps its sign over the whole
            search (about ``1e6`` time units past ``t0``).
        ValueError: for a ``t0`` with more than one element, a non-positive
            ``event_tol``, or, when gradients are needed, an event where
            ``event_fn`` touches zero without crossing it (its rate of change
            along the solution is zero, so the event time has no derivative).
        TypeError: for an ``event_fn`` that is not callable or returns no tensor,
            or a non-boolean ``reverse_time``; errors of ``odeint_interface``
            (an unknown option, say) pass through.

    Example:
        >>> import torch
        >>> from flowkit import odeint_event
        >>> y0 = torch.tensor([1.0], dtype=torch.float64)
        >>> event_t, ys = odeint_event(
        ...     lambda t, y: -y, y0, torch.tensor(0.0, dtype=torch.float64),
        ...     event_fn=lambda t, y: y[0] - 0.5, rtol=1e-10, atol=1e-10,
        ... )
        >>> round(float(event_t), 8), round(float(ys[-1, 0]), 8)  # ln 2, 1/2
        (0.69314718, 0.5)
    """
    start = _initial_time(t0, y0)
    if not callable(event_fn):
        raise TypeError(
            f"event_fn must be callable as event_fn(t, y), got {type(event_fn).__name__}."
        )
    if not isinstance(reverse_time, bool):
        raise TypeError(f"reverse_time must be True or False, got {reverse_time!r}.")
    tol = _event_tolerance(event_tol, kwargs.get("atol"))
    y0_detached = like(y0, tuple(leaf.detach() for leaf in as_tuple(y0)))
    event = combine_event_functions(event_fn, start.detach(), y0_detached)

    recording = _RecordingField(func)

    def solve(y_start: State, times: Tensor) -> tuple[State, list[float]]:
        recording.times = []
        return odeint_interface(recording, y_start, times, **kwargs), recording.times

    with torch.no_grad():
        event_t = locate_event(
            solve, event, start.detach(), y0_detached, direction=-1 if reverse_time else 1, tol=tol
        )
    if bool(event_t == start.detach()):  # an event at t0: nothing to solve, nothing to move
        return start, like(y0, tuple(torch.stack([leaf, leaf]) for leaf in as_tuple(y0)))
    times = torch.cat([start.reshape(1), event_t.reshape(1)])
    ys = odeint_interface(func, y0, times, **kwargs)
    stacked = as_tuple(ys)
    event_t, final = _through_event_time(
        func, event, event_t, tuple(leaf[-1] for leaf in stacked), y0
    )
    leaves = tuple(
        torch.cat([leaf[:-1], end[None]]) for leaf, end in zip(stacked, final, strict=True)
    )
    return event_t, like(y0, leaves)


class _RecordingField(nn.Module):
    """``func``, noting the times at which the solver evaluates it (its steps and stages).

    A module, so that an adjoint interface finds the parameters of ``func``
    (registered as a submodule when it is a module) as it would on ``func``.
    """

    def __init__(self, func: Dynamics) -> None:
        super().__init__()
        self.func = func
        self.times: list[float] = []

    def forward(self, t: Tensor, y: State) -> State:
        self.times.append(float(t))
        return self.func(t, y)


def _initial_time(t0: Tensor | float, y0: State) -> Tensor:
    """``t0`` as a 0-dimensional tensor (keeping its graph); a float takes the state's dtype."""
    leaves = as_tuple(y0)
    if not isinstance(t0, Tensor):
        t0 = torch.tensor(float(t0), dtype=leaves[0].dtype, device=leaves[0].device)
    if t0.numel() != 1:
        raise ValueError(
            f"t0 must be a single time (a tensor with one element), got shape {tuple(t0.shape)}; "
            "odeint_event solves from t0 until the event, so it takes no grid of times."
        )
    return t0.reshape(())


def _event_tolerance(event_tol: float | None, atol: object) -> float:
    """The bracket length for the search: ``event_tol``, else a numeric ``atol``, else 1e-9."""
    if event_tol is not None:
        if not isinstance(event_tol, int | float) or not event_tol > 0:
            raise ValueError(f"event_tol must be a positive number, got {event_tol!r}.")
        return float(event_tol)
    if isinstance(atol, int | float) and atol > 0:
        return float(atol)
    if isinstance(atol, Tensor) and atol.numel() > 0 and float(atol.min()) > 0:
        return float(atol.min())
    return DEFAULT_EVENT_TOL


def _through_event_time(
    func: Dynamics,
    event: EventFunction,
    event_t: Tensor,
    final: tuple[Tensor, ...],
    template: State,
) -> tuple[Tensor, tuple[Tensor, ...]]:
    """Give the event time and the final state their implicit-function-theorem gradients.

    The values stay ``event_t`` and ``final``; ``c`` is evaluated once more
    with the graph of ``final`` (and of ``event_fn``'s parameters), and
    ``shift = -(c - c.detach()) / (dc/dt)`` (zero in value) carries
    ``dt*/dθ``.
    """
    if not torch.is_grad_enabled():
        return event_t, final
    value = event(event_t, like(template, final))
    if not value.requires_grad:
        return event_t, final
    detached = tuple(leaf.detach() for leaf in final)
    with torch.no_grad():
        velocity = tuple(v.detach() for v in as_tuple(func(event_t, like(template, detached))))
    rate = _rate_along_solution(event, event_t, detached, velocity, template)
    if rate == 0.0 or not torch.isfinite(torch.tensor(rate)):
        raise ValueError(
            f"event_fn touches zero at t={float(event_t)} without crossing it (its rate of change "
            f"along the solution is {rate}), so the event time has no derivative; make the event "
            "a transversal crossing, or compute the event under torch.no_grad()."
        )
    shift = (value.detach() - value) / rate
    moved = tuple(leaf + v * shift.to(leaf.dtype) for leaf, v in zip(final, velocity, strict=True))
    return event_t + shift.to(event_t.dtype), moved


def _rate_along_solution(
    event: EventFunction,
    event_t: Tensor,
    state: tuple[Tensor, ...],
    velocity: tuple[Tensor, ...],
    template: State,
) -> float:
    """``dc/dt = ∂c/∂t + ∂c/∂y · f`` at the event (the total derivative along the solution)."""
    with torch.enable_grad():
        t_var = event_t.detach().clone().requires_grad_(True)
        y_var = tuple(leaf.clone().requires_grad_(True) for leaf in state)
        value = event(t_var, like(template, y_var))
        grads = torch.autograd.grad(value, (t_var, *y_var), allow_unused=True)
    rate = float(grads[0]) if grads[0] is not None else 0.0
    for grad, v in zip(grads[1:], velocity, strict=True):
        if grad is not None:
            rate += float((grad * v).sum())
    return rate
