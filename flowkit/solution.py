"""The result of a solve: states at the requested times plus statistics.

Every integrator returns a :class:`Solution`, whatever its backend, so that
benchmarks and users read function evaluations and step counts the same way.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from torch import Tensor

from flowkit.state import State, as_tuple, like

__all__ = ["Solution", "SolveStatus", "SolverStats"]

SolveStatus = Literal["success", "max_steps_reached"]


@dataclass
class SolverStats:
    """Statistics of one solve, in one schema for every integrator.

    Attributes:
        nfe: function evaluations of the forward solve.
        n_accepted: accepted steps (every step of a fixed-step method).
        n_rejected: rejected steps (always 0 for fixed-step methods).
        final_step_size: the last step size taken (or proposed), or ``None``.
        backward_nfe: function evaluations of a backward (adjoint) solve, if any.
        backward_n_accepted: accepted steps of the backward solve.
        backward_n_rejected: rejected steps of the backward solve.
        status: ``"success"``, or ``"max_steps_reached"`` when a partial
            solution was returned on request.
        t_reached: the time the solve reached (the end time on success).
    """

    nfe: int = 0
    n_accepted: int = 0
    n_rejected: int = 0
    final_step_size: float | None = None
    backward_nfe: int = 0
    backward_n_accepted: int = 0
    backward_n_rejected: int = 0
    status: SolveStatus = "success"
    t_reached: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dictionary of the statistics."""
        return asdict(self)

    @classmethod
    def total(cls, stats: Iterable[SolverStats | None]) -> SolverStats | None:
        """The counts of several solves summed (``None`` entries skipped).

        Function evaluations and accepted and rejected steps are added, forward
        and backward; the status is the last unsuccessful one (``"success"``
        when all succeeded). Per-solve values (step size, time reached, extras)
        are not summed and stay unset.

        Returns:
            The sum, or ``None`` when no statistics were given.
        """
        present = [s for s in stats if s is not None]
        if not present:
            return None
        total = cls()
        for s in present:
            for name in _SUMMED:
                setattr(total, name, getattr(total, name) + getattr(s, name))
            if s.status != "success":
                total.status = s.status
        return total


_SUMMED = (
    "nfe",
    "n_accepted",
    "n_rejected",
    "backward_nfe",
    "backward_n_accepted",
    "backward_n_rejected",
)


@dataclass
class Solution:
    """States at the requested times, stacked along a new first axis.

    Attributes:
        ts: the requested times, a 1-D tensor of length ``T``.
        ys: the states at ``ts``; each leaf has shape ``(T, *leaf_shape)``.
        stats: the statistics of the solve.
    """

    ts: Tensor
    ys: State
    stats: SolverStats

    @property
    def final(self) -> State:
        """The state at the last requested time."""
        return like(self.ys, tuple(leaf[-1] for leaf in as_tuple(self.ys)))
