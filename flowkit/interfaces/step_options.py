"""Validation of the step options shared by the adaptive and the fixed-step bases."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Literal

__all__ = [
    "DEFAULT_N_STEPS",
    "OnMaxSteps",
    "check_on_max_steps",
    "check_step_grid",
    "equal_step_counts",
    "largest_grid_step",
    "positive_integer",
    "positive_number",
]

OnMaxSteps = Literal["raise", "return"]

DEFAULT_N_STEPS = 100
"""``n_steps`` of a fixed-step grid when neither ``step_size`` nor ``n_steps`` is given."""


def positive_number(
    name: str, value: float | None, *, allow_zero: bool = False, finite: bool = False
) -> float | None:
    """``value`` as a float, checked to be a number ``> 0`` (or ``>= 0``); None passes.

    Raises:
        TypeError: for a value that is not a number.
        ValueError: for a value out of range (or infinite with ``finite``).
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}.")
    ok = value >= 0 if allow_zero else value > 0
    if not ok or math.isnan(value) or (finite and math.isinf(value)):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be {bound}{' and finite' if finite else ''}, got {value!r}.")
    return float(value)


def positive_integer(name: str, value: int | None) -> int | None:
    """``value`` checked to be a positive integer; None passes.

    Raises:
        ValueError: for anything else (booleans included).
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}.")
    return value


def check_on_max_steps(value: str) -> OnMaxSteps:
    """``value`` checked to be ``"raise"`` or ``"return"``.

    Raises:
        ValueError: for any other value.
    """
    if value not in ("raise", "return"):
        raise ValueError(f"on_max_steps must be 'raise' or 'return', got {value!r}.")
    return value  # type: ignore[return-value]


def equal_step_counts(times: Sequence[float], largest_step: float) -> list[int]:
    """The number of equal steps in each interval between consecutive ``times``.

    The fewest steps no longer than ``largest_step`` (at least one per
    interval); a ratio within 1e-9 (relative) of an integer counts as that
    integer, so round-off in the times never adds a sliver step. The one
    routine behind every fixed-step grid (ODE and SDE integrators).
    """
    counts = []
    for a, b in itertools.pairwise(times):
        r = abs(b - a) / largest_step
        near = round(r)
        counts.append(max(1, near if abs(r - near) <= 1e-9 * max(1.0, r) else math.ceil(r)))
    return counts


def check_step_grid(
    step_size: float | None, n_steps: int | None
) -> tuple[float | None, int | None]:
    """``(step_size, n_steps)`` of a fixed-step grid, checked, with the default filled in.

    At most one may be given; with neither, ``n_steps`` is :data:`DEFAULT_N_STEPS`.

    Raises:
        ValueError: for both, or for a value that is not positive (finite).
        TypeError: for a step size that is not a number.
    """
    if step_size is not None and n_steps is not None:
        raise ValueError(
            f"give either step_size or n_steps, not both (got step_size={step_size!r}, "
            f"n_steps={n_steps!r})."
        )
    checked_size = positive_number("step_size", step_size, finite=True)
    checked_steps = positive_integer("n_steps", n_steps)
    if checked_steps is None and checked_size is None:
        checked_steps = DEFAULT_N_STEPS
    return checked_size, checked_steps


def largest_grid_step(
    times: Sequence[float], step_size: float | None, n_steps: int | None
) -> float:
    """The largest step for output ``times``: ``step_size``, or the span over ``n_steps``."""
    if step_size is not None:
        return step_size
    return abs(times[-1] - times[0]) / n_steps  # type: ignore[operator]
