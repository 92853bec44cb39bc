"""The options of :func:`flowkit.sde.sample`, validated in one place.

:class:`SamplerOptions` checks every option of the samplers of a score model
(see :mod:`flowkit.sde.sampling`): names (sampler, predictor, corrector, with
the closest match for a typo), ranges, and that an option the chosen sampler
does not use is left at its default instead of being silently ignored.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from flowkit.errors import FlowkitError
from flowkit.sde.correctors import CORRECTORS
from flowkit.sde.predictors import PREDICTORS

__all__ = [
    "DEFAULT_SAMPLER_STEPS",
    "SAMPLER_NAMES",
    "SamplerOptionError",
    "SamplerOptions",
]

SAMPLER_NAMES: tuple[str, ...] = ("reverse_sde", "pc", "ode")
"""The samplers of :func:`flowkit.sde.sample`."""

DEFAULT_SAMPLER_STEPS = 1000
"""The default number of steps of the stochastic samplers (Song et al.'s N)."""


class SamplerOptionError(FlowkitError, ValueError):
    """A sampler option that cannot be used (unknown name, bad value, unused option)."""


def _choice(what: str, value: str, choices: Mapping[str, Any] | tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in choices:
        close = difflib.get_close_matches(str(value), list(choices), n=1, cutoff=0.6)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise SamplerOptionError(
            f"Unknown {what} {value!r}; choose one of {', '.join(choices)}.{hint}"
        )
    return value


@dataclass(frozen=True)
class SamplerOptions:
    """The validated options of :func:`flowkit.sde.sample` (see there for their meaning).

    Raises:
        SamplerOptionError: for an unknown sampler, predictor or corrector, a
            value out of range, or an option the sampler does not use set to
            anything but its default.
    """

    sampler: str = "reverse_sde"
    n_steps: int | None = None
    denoise: bool = True
    sde_integrator: str = "euler_maruyama"
    sde_integrator_options: Mapping[str, Any] = field(default_factory=dict)
    predictor: str = "reverse_diffusion"
    corrector: str = "langevin"
    corrector_steps: int = 1
    snr: float = 0.16
    integrator: str | None = None
    integrator_options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _choice("sampler", self.sampler, SAMPLER_NAMES)
        _choice("predictor", self.predictor, PREDICTORS)
        _choice("corrector", self.corrector, CORRECTORS)
        for name, users in _USED_BY.items():
            value = getattr(self, name)
            if self.sampler not in users and value != _DEFAULTS[name]:
                raise SamplerOptionError(
                    f"{name}={value!r} is an option of the {' and '.join(users)} sampler"
                    f"{'s' if len(users) > 1 else ''}, not of {self.sampler!r}; drop it."
                )
        if self.n_steps is not None and (
            isinstance(self.n_steps, bool) or not isinstance(self.n_steps, int) or self.n_steps < 1
        ):
            raise SamplerOptionError(f"n_steps must be a positive integer, got {self.n_steps!r}.")
        steps = self.corrector_steps
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise SamplerOptionError(
                f"corrector_steps must be a positive integer, got {steps!r}; "
                "for no correction use corrector='none'."
            )
        snr = self.snr
        if (
            isinstance(snr, bool)
            or not isinstance(snr, (int, float))
            or not (math.isfinite(snr) and snr > 0)
        ):
            raise SamplerOptionError(
                f"snr must be a positive finite number, got {snr!r} (Song et al. use 0.16 for "
                "ve and 0.01-0.17 for vp); for no correction use corrector='none'."
            )
        own = sorted({"n_steps", "step_size"} & set(self.sde_integrator_options))
        if own:
            raise SamplerOptionError(
                f"sde_integrator_options {own}: the sampler sets the integrator's steps; "
                "give n_steps to sample() (--steps on the command line) instead."
            )

    @property
    def steps(self) -> int:
        """The number of steps of the stochastic samplers."""
        return self.n_steps if self.n_steps is not None else DEFAULT_SAMPLER_STEPS


_USED_BY: dict[str, tuple[str, ...]] = {
    "n_steps": ("reverse_sde", "pc"),
    "denoise": ("reverse_sde", "pc"),
    "sde_integrator": ("reverse_sde",),
    "sde_integrator_options": ("reverse_sde",),
    "predictor": ("pc",),
    "corrector": ("pc",),
    "corrector_steps": ("pc",),
    "snr": ("pc",),
    "integrator": ("ode",),
    "integrator_options": ("ode",),
}

_DEFAULTS: dict[str, Any] = {
    "n_steps": None,
    "denoise": True,
    "sde_integrator": "euler_maruyama",
    "sde_integrator_options": {},
    "predictor": "reverse_diffusion",
    "corrector": "langevin",
    "corrector_steps": 1,
    "snr": 0.16,
    "integrator": None,
    "integrator_options": {},
}
