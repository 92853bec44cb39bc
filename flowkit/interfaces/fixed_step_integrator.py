"""The fixed-step-integrator base: one meaning of ``step_size`` and ``n_steps``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from flowkit.interfaces.integrator import Integrator
from flowkit.interfaces.step_options import (
    DEFAULT_N_STEPS,
    OnMaxSteps,
    check_on_max_steps,
    check_step_grid,
    equal_step_counts,
    largest_grid_step,
    positive_integer,
)

__all__ = ["DEFAULT_N_STEPS", "FixedStepIntegrator"]


class FixedStepIntegrator(Integrator):
    """An integrator taking steps fixed before the solve starts.

    The steps are those of :meth:`step_counts`, the one routine that splits
    the output intervals, so every fixed-step integrator means the same by
    its options:

    * ``n_steps``: the number of equal steps across the **whole span**
      ``t[0]..t[-1]``, i.e. a largest step of ``|t[-1] - t[0]| / n_steps``;
    * ``step_size``: that largest step given directly.

    Each interval between consecutive output times is divided into the
    fewest equal steps no longer than the largest step (at least one), so
    output times are hit exactly; with equally spaced output times and
    ``n_steps`` a multiple of their number of intervals, that is exactly
    ``n_steps`` steps in all.

    Deriving from this base declares these options; a subclass calls
    ``super().__init__`` with the ones it supports.

    Arguments:
        step_size: the largest step (positive and finite; its sign follows the
            time direction). Exclusive with ``n_steps``.
        n_steps: the number of equal steps across the whole span (default
            :data:`DEFAULT_N_STEPS` when ``step_size`` is not given).
        max_steps: a budget on the total number of steps (default: none; the
            number is known before the solve starts).
        on_max_steps: ``"raise"`` (default) or ``"return"`` the partial solution.

    Raises:
        TypeError: for a wrongly typed value.
        ValueError: for both ``step_size`` and ``n_steps``, or invalid values.

    Example:
        >>> from flowkit.interfaces import FixedStepIntegrator
        >>> class Steps(FixedStepIntegrator):
        ...     def integrate(self, func, y0, t): ...
        >>> Steps(n_steps=4).step_counts([0.0, 0.5, 1.0])
        [2, 2]
        >>> Steps(step_size=0.3).step_counts([0.0, 0.5, 1.0])
        [2, 2]
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
        self.step_size, self.n_steps = check_step_grid(step_size, n_steps)
        self.max_steps = positive_integer("max_steps", max_steps)
        self.on_max_steps = check_on_max_steps(on_max_steps)

    def largest_step(self, times: Sequence[float]) -> float:
        """The largest step for output ``times``: ``step_size``, or the span over ``n_steps``."""
        return largest_grid_step(times, self.step_size, self.n_steps)

    def step_counts(self, times: Sequence[float]) -> list[int]:
        """The number of equal steps in each interval between consecutive ``times``.

        The fewest steps no longer than :meth:`largest_step` (at least one per
        interval); a ratio within 1e-9 (relative) of an integer counts as that
        integer, so round-off in the times never adds a sliver step.
        """
        return equal_step_counts(times, self.largest_step(times))
