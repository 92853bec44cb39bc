"""Locating an event: the first time an event function reaches zero along a solution.

The search is solver-agnostic: it only asks a ``solve(y_start, times)`` callable
for the states at given times (any ``odeint``-shaped interface, run without
gradients), so every integrator that ``flowkit.odeint`` accepts can locate
events, and the states between its steps come from the integrator's own dense
output (or its steps to the requested times).

1. **Bracketing.** From ``t0`` the solution is solved over consecutive
   windows (in the direction of integration), each starting from the last
   state of the one before, and sampled on a grid of :data:`GRID_INTERVALS`
   intervals; when the solver stepped more finely than that grid (it
   evaluated the field at more than :data:`STAGE_TIMES_PER_STEP` times per
   grid interval), the window is sampled again at every time where it did
   (its steps and stages). The grid is thus at least as fine as the solver's
   own steps, as torchdiffeq's search, so an oscillation faster than the grid
   is not stepped over. The event function
   is evaluated at every grid time; the first time where it no longer has its
   initial sign closes the bracket. The first window is
   :data:`FIRST_WINDOW` long; each next one is scaled so that the solver
   evaluates the field about :data:`TARGET_EVALUATIONS` times in it (at most
   4 times longer, at least half as long), so slow dynamics are crossed in a
   few windows and fast ones are never solved far past their event.
2. **Refinement.** The bracket is re-sampled on a grid of
   :data:`GRID_INTERVALS` intervals, solving from the bracket's left state,
   until it is shorter than the tolerance (five bits per solve; the grid
   generalises bisection). The event time is the midpoint of the last bracket,
   as torchdiffeq returns it.

An event inside one grid interval where the function leaves and regains its
sign is not seen (torchdiffeq misses it inside one solver step in the same
way). Vector-valued event functions are combined as torchdiffeq combines them
(:func:`combine_event_functions`): the event is the first zero of any
component.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from flowkit.errors import IntegrationError
from flowkit.state import State, as_tuple, like

__all__ = [
    "FIRST_WINDOW",
    "GRID_INTERVALS",
    "MAX_SPAN",
    "MAX_WINDOWS",
    "STAGE_TIMES_PER_STEP",
    "TARGET_EVALUATIONS",
    "EventFunction",
    "EventNotFoundError",
    "StateSolver",
    "combine_event_functions",
    "locate_event",
]

GRID_INTERVALS = 32
"""Intervals of the search grid in every window and every refinement."""

FIRST_WINDOW = 1.0 / 32
"""Length of the first search window."""

STAGE_TIMES_PER_STEP = 5
"""Distinct times at which dopri5 and tsit5 evaluate the field per step (their stage times).

More than ``STAGE_TIMES_PER_STEP * GRID_INTERVALS`` distinct evaluation times
in a window mean more steps than grid intervals: the solver's times are
searched too. A method with fewer stage times (rk4: 2) may then step up to
that factor more finely than the grid before its times are searched.
"""

TARGET_EVALUATIONS = 4 * GRID_INTERVALS
"""Distinct field-evaluation times aimed at per window (about 25 steps of dopri5)."""

MAX_SPAN = 2.0**20
"""How far past ``t0`` (about 1e6 time units) the search goes before giving up."""

MAX_WINDOWS = 4000
"""Windows searched before giving up: about the 100000 steps of one solve's default budget."""

_MAX_REFINEMENTS = 64

EventFunction = Callable[[Tensor, State], Tensor]
"""``event_fn(t, y)``: a tensor whose zero (of any element) is the event."""

StateSolver = Callable[[State, Tensor], tuple[State, list[float]]]
"""``solve(y_start, times)``: the states at ``times`` (stacked on a new first axis), from
``y_start`` at ``times[0]``, and the times at which the solver evaluated the field."""


class EventNotFoundError(IntegrationError):
    """The event function kept its initial sign over the whole search.

    Attributes:
        t: the last time searched.
    """


def combine_event_functions(event_fn: EventFunction, t0: Tensor, y0: State) -> EventFunction:
    """A scalar event function, positive at ``t0``, zero when any element of ``event_fn`` is.

    Each element is multiplied by its sign at ``(t0, y0)`` and the minimum is
    taken (torchdiffeq's rule, so an element that is zero at ``t0`` is an event
    at ``t0``).

    Arguments:
        event_fn: the user's event function ``event_fn(t, y)``.
        t0, y0: the initial time and state.

    Returns:
        ``combined(t, y)``, a 0-dimensional tensor.

    Raises:
        TypeError: when ``event_fn`` returns something that is not a tensor.
    """
    with torch.no_grad():
        first = event_fn(t0, y0)
    if not isinstance(first, Tensor):
        raise TypeError(
            f"event_fn(t, y) must return a tensor, got {type(first).__name__}; return e.g. "
            "y[0] - 1.0 for the event 'first component reaches 1'."
        )
    initial_signs = torch.sign(first.detach())

    def combined(t: Tensor, y: State) -> Tensor:
        return torch.min(event_fn(t, y) * initial_signs)

    return combined


def _first_reached(event: EventFunction, times: Tensor, states: State) -> int | None:
    """The first index ``i >= 1`` where ``event`` is no longer positive, or ``None``."""
    leaves = as_tuple(states)
    for i in range(1, len(times)):
        value = event(times[i], like(states, tuple(leaf[i] for leaf in leaves)))
        if not bool(torch.isfinite(value)):
            raise IntegrationError(
                f"event_fn returned {float(value)} at t={float(times[i])}; it must be finite "
                "along the solution.",
                t=float(times[i]),
            )
        if float(value) <= 0.0:
            return i
    return None


def _state_at(states: State, i: int) -> State:
    return like(states, tuple(leaf[i] for leaf in as_tuple(states)))


def _grid(start: float, stop: float, like_t: Tensor) -> Tensor | None:
    """``GRID_INTERVALS + 1`` times from ``start`` to ``stop`` in ``like_t``'s dtype.

    ``None`` when the dtype cannot hold them strictly monotone (the bracket is
    at round-off).
    """
    times = torch.linspace(start, stop, GRID_INTERVALS + 1, dtype=torch.float64)
    times = times.to(dtype=like_t.dtype, device=like_t.device)
    steps = torch.diff(times) * (1.0 if stop > start else -1.0)
    if not bool((steps > 0).all()):
        return None
    return times


def _inside(grid: Tensor, visited: list[float]) -> list[float]:
    """The distinct times of ``visited`` strictly inside the span of ``grid``, sorted."""
    low, high = sorted((float(grid[0]), float(grid[-1])))
    return sorted({t for t in visited if low < t < high})


def _with_solver_times(grid: Tensor, visited: list[float]) -> Tensor | None:
    """``grid`` joined with the solver's evaluation times in it; ``None`` when it is finer.

    The solver's times are joined only when it stepped more finely than the
    grid: more than :data:`STAGE_TIMES_PER_STEP` distinct evaluation times per
    grid interval.
    """
    first, last = float(grid[0]), float(grid[-1])
    inside = _inside(grid, visited)
    if len(inside) <= STAGE_TIMES_PER_STEP * GRID_INTERVALS:
        return None
    joined = torch.tensor(sorted({*grid.tolist(), *inside}), dtype=torch.float64)
    joined = torch.unique(joined.to(grid.dtype))  # sorted; casting may merge neighbours
    joined = joined if last > first else joined.flip(0)
    return joined.to(grid.device)


def locate_event(
    solve: StateSolver,
    event: EventFunction,
    t0: Tensor,
    y0: State,
    *,
    direction: int,
    tol: float,
) -> Tensor:
    """The first time after ``t0`` (in ``direction``) where ``event`` is no longer positive.

    Arguments:
        solve: states at given times from a given initial state (run without
            gradients by the caller).
        event: a combined event function, positive at ``(t0, y0)``
            (:func:`combine_event_functions`).
        t0: the initial time, a 0-dimensional tensor.
        y0: the initial state.
        direction: ``1`` to search forward in time, ``-1`` backward.
        tol: the bracket length at which refinement stops (absolute time).

    Returns:
        The event time, a 0-dimensional tensor of ``t0``'s dtype (``t0`` itself
        when ``event`` is not positive at ``t0``).

    Raises:
        EventNotFoundError: when ``event`` stays positive for :data:`MAX_SPAN`
            time units or :data:`MAX_WINDOWS` windows.
        IntegrationError: when ``event`` returns NaN or Inf.
    """
    if float(event(t0, y0)) <= 0.0:
        return t0.detach().clone()
    start, y_start, window = float(t0), y0, FIRST_WINDOW
    windows = 0
    while windows < MAX_WINDOWS and abs(start - float(t0)) < MAX_SPAN:
        windows += 1
        times = _grid(start, start + direction * window, t0)
        if times is None:  # the window is below the round-off of the time
            window *= 4.0
            continue
        states, visited = solve(y_start, times)
        evaluations = len(_inside(times, visited))
        finer = _with_solver_times(times, visited)
        if finer is not None:
            times, states = finer, solve(y_start, finer)[0]
        hit = _first_reached(event, times, states)
        if hit is not None:
            before = float(times[hit - 1])
            return _refine(
                solve, event, t0, before, _state_at(states, hit - 1), float(times[hit]), tol
            )
        start, y_start = float(times[-1]), _state_at(states, -1)
        window *= min(4.0, max(0.5, TARGET_EVALUATIONS / max(1, evaluations)))
    raise EventNotFoundError(
        f"event_fn never reached zero between t0={float(t0)} and t={start} "
        f"({windows} search windows); check its sign convention (the event is where it "
        "changes sign) or pass reverse_time=True to search backward in time.",
        t=start,
    )


def _refine(
    solve: StateSolver,
    event: EventFunction,
    like_t: Tensor,
    before: float,
    y_before: State,
    after: float,
    tol: float,
) -> Tensor:
    """Shrink the bracket ``(before, after]`` around the event to below ``tol``; its midpoint."""
    for _ in range(_MAX_REFINEMENTS):
        if abs(after - before) <= tol:
            break
        times = _grid(before, after, like_t)
        if times is None:
            break
        states = solve(y_before, times)[0]
        hit = _first_reached(event, times, states)
        # Restarted from y_before, the solve may place the zero just past `after`
        # (a difference at the solver's tolerance): the event is then in the last interval.
        hit = len(times) - 1 if hit is None else hit
        before, y_before = float(times[hit - 1]), _state_at(states, hit - 1)
        after = float(times[hit])
    middle = torch.tensor(0.5 * (before + after), dtype=torch.float64)
    return middle.to(dtype=like_t.dtype, device=like_t.device)
