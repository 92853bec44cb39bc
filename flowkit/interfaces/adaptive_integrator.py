"""The adaptive-integrator base: declared tolerances, error norm and step options."""

from __future__ import annotations

import copy
import math
from typing import TYPE_CHECKING, ClassVar

from flowkit.interfaces.integrator import Integrator
from flowkit.interfaces.step_options import (
    OnMaxSteps,
    check_on_max_steps,
    positive_integer,
    positive_number,
)

if TYPE_CHECKING:
    from typing import Self

    from flowkit.rk.control import ErrorNorm, TolLike

__all__ = ["AdaptiveIntegrator"]


class AdaptiveIntegrator(Integrator):
    """An integrator that controls its step size from an error estimate.

    Deriving from this base *declares* the options below (code that needs
    tolerances or a norm asks ``isinstance(x, AdaptiveIntegrator)``, never a
    signature). A subclass calls ``super().__init__`` with the options it
    supports; the others keep their defaults, which mean "no limit".

    Arguments:
        rtol: relative tolerance (default 1e-7, as torchdiffeq): a float, a
            tensor broadcastable to the state, or a tuple of those, one per leaf.
        atol: absolute tolerance (default 1e-9), same forms as ``rtol``.
        first_step: the first step size (default None: the method chooses).
        min_step: raise :class:`~flowkit.errors.StepSizeUnderflowError` when
            the step would fall below this (default 0: only round-off).
        max_step: the largest step allowed (default: unbounded).
        max_steps: the budget of attempted (accepted plus rejected) steps
            (default 100000).
        on_max_steps: ``"raise"`` (default) or ``"return"`` the partial
            solution, with ``stats.status == "max_steps_reached"``.
        norm: a callable taking the tuple of scaled-error leaves and returning
            a scalar (default: :func:`~flowkit.rk.control.mixed_rms_norm`, the
            largest per-leaf RMS, as torchdiffeq); e.g. a seminorm that
            ignores some leaves. :meth:`with_norm` gives a copy with another.

    Raises:
        TypeError: for a wrongly typed value.
        ValueError: for invalid values, including ``rtol`` and ``atol`` both 0,
            or ``first_step``/``max_step`` below ``min_step``.
    """

    adaptive: ClassVar[bool] = True

    def __init__(
        self,
        *,
        rtol: TolLike = 1e-7,
        atol: TolLike = 1e-9,
        first_step: float | None = None,
        min_step: float = 0.0,
        max_step: float | None = None,
        max_steps: int = 100_000,
        on_max_steps: OnMaxSteps = "raise",
        norm: ErrorNorm | None = None,
    ) -> None:
        from flowkit.rk.control import mixed_rms_norm, validate_tolerance, validate_tolerance_pair

        self.rtol = validate_tolerance("rtol", rtol)
        self.atol = validate_tolerance("atol", atol)
        validate_tolerance_pair(self.rtol, self.atol)
        self.first_step = positive_number("first_step", first_step)
        self.min_step: float = positive_number("min_step", min_step, allow_zero=True) or 0.0
        self.max_step: float = positive_number("max_step", max_step) or math.inf
        if self.first_step is not None and self.first_step < self.min_step:
            raise ValueError(f"first_step={first_step} is below min_step={min_step}.")
        if self.max_step < self.min_step:
            raise ValueError(f"max_step={max_step} is below min_step={min_step}.")
        if max_steps is None:
            raise ValueError("max_steps must be a positive integer, got None.")
        self.max_steps: int = positive_integer("max_steps", max_steps)  # type: ignore[assignment]
        self.on_max_steps = check_on_max_steps(on_max_steps)
        if norm is not None and not callable(norm):
            raise TypeError(f"norm must be callable, got {type(norm).__name__}.")
        self.norm: ErrorNorm = norm or mixed_rms_norm

    def with_norm(self, norm: ErrorNorm) -> Self:
        """A shallow copy of this integrator that measures errors with ``norm``.

        Raises:
            TypeError: when ``norm`` is not callable.
        """
        if not callable(norm):
            raise TypeError(f"norm must be callable, got {type(norm).__name__}.")
        clone = copy.copy(self)
        clone.norm = norm
        return clone
