"""The one map between diffusion time and a CNF's time.

Score-based models run an SDE in **diffusion time** ``s``: data at
``s = 0`` (in practice at the SDE's ``start_time``, a small ``eps``), noise at
``s = T`` (its ``end_time``). A flowkit CNF runs in **flow time** ``t``: base
at ``t0``, data at ``t1``. :class:`DiffusionClock` maps one onto the other,
affinely and decreasingly::

    s(t) = T + (eps - T) (t - t0) / (t1 - t0),     ds/dt = (eps - T) / (t1 - t0) < 0,

so ``t0`` (the base, the SDE's prior) is ``s = T`` and ``t1`` (the data) is
``s = eps``. Every network in flowkit, score networks included, takes flow
time ``t``; SDEs and samplers speak diffusion time ``s``; nothing else
converts between them.
"""

from __future__ import annotations

import math

from torch import Tensor

__all__ = ["DiffusionClock"]


class DiffusionClock:
    """The affine map between flow time ``t in [t0, t1]`` and diffusion time ``s in [eps, T]``.

    Arguments:
        start_time: ``eps``, the diffusion time of the data end (``t1``).
        end_time: ``T``, the diffusion time of the noise end (``t0``).
        t0, t1: the CNF's base and data times (default 0 and 1).

    Example:
        >>> clock = DiffusionClock(start_time=0.0, end_time=1.0)
        >>> clock.diffusion_time(0.25), clock.flow_time(0.75), clock.ds_dt
        (0.75, 0.25, -1.0)
    """

    def __init__(
        self, *, start_time: float, end_time: float, t0: float = 0.0, t1: float = 1.0
    ) -> None:
        if not (math.isfinite(t0) and math.isfinite(t1) and t0 != t1):
            raise ValueError(f"t0 and t1 must be finite and different, got {t0!r} and {t1!r}.")
        if not (0 <= start_time < end_time):
            raise ValueError(
                f"need 0 <= start_time < end_time, got start_time={start_time!r}, "
                f"end_time={end_time!r}."
            )
        self.start_time = float(start_time)
        self.end_time = float(end_time)
        self.t0 = float(t0)
        self.t1 = float(t1)
        self.ds_dt = (self.start_time - self.end_time) / (self.t1 - self.t0)
        """``ds/dt``: negative, since flow time runs from noise to data."""

    def diffusion_time(self, t: Tensor | float) -> Tensor | float:
        """``s(t)``, the diffusion time of flow time ``t``."""
        return self.end_time + self.ds_dt * (t - self.t0)

    def flow_time(self, s: Tensor | float) -> Tensor | float:
        """``t(s)``, the flow time of diffusion time ``s``."""
        return self.t0 + (s - self.end_time) / self.ds_dt

    def __repr__(self) -> str:
        return (
            f"DiffusionClock(s in [{self.start_time:g}, {self.end_time:g}] <-> "
            f"t in [{self.t1:g}, {self.t0:g}])"
        )
