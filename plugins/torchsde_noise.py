"""The noise of the torchsde SDE integrators: seeded Brownian motions and reverse time.

Noise:
    * Without a ``brownian`` path, each call builds a torchsde Brownian motion over
      the span, seeded by one integer drawn from ``generator`` (``None``:
      torch's global generator), so a generator seeded alike gives the same
      path, and the generator moves on by one draw. The option ``brownian``
      picks its kind: ``"interval"`` (``torchsde.BrownianInterval``, the
      default, fast), ``"tree"`` (a ``BrownianInterval`` with the dyadic
      ``halfway_tree``, as torchsde's ``BrownianTree``: the path depends on
      the seed only, so the same seed gives the same path at every step size;
      slower) or ``"path"`` (as torchsde's ``BrownianPath``: every value is
      cached, fast, memory grows with the queries). ``srk`` gets the
      space-time Lévy area it needs.
    * A given ``brownian`` (a :class:`~flowkit.interfaces.BrownianMotion`
      on ``[min(t), max(t)]``, e.g. a ``torchsde.BrownianInterval``) is
      queried instead. ``srk`` also needs its space-time Lévy area
      (``levy_area_approximation="space-time"``, ``"davie"`` or ``"foster"``);
      without one it raises ``ValueError``.

Reverse time: torchsde wants increasing times, so decreasing ``t`` is solved
in ``u = -t``: ``dY = -mu(-u, Y) du + sigma(-u, Y) dB(u)`` with
``B(u) = -W(-u)``, a Brownian motion in ``u``. Its increment over
``[u_a, u_b]`` is ``W(t_a) - W(t_b)``, the increment ``brownian(t_b, t_a)``
that every flowkit SDE integrator takes for a step from ``t_a`` down to
``t_b`` (the Lévy area maps to ``h I - U``). Steps are therefore the same
as native Euler-Maruyama's with ``dt < 0``. :class:`SolverTimeBrownian` maps a
given path to ``u``; an own Brownian motion is simply built over ``[-t0, -t1]``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from flowkit.interfaces import BrownianMotion

__all__ = ["BROWNIAN_KINDS", "LEVY_AREA_KINDS", "SolverTimeBrownian", "seeded_brownian"]

BROWNIAN_KINDS: tuple[str, ...] = ("interval", "tree", "path")
"""The values of the ``brownian`` option."""

LEVY_AREA_KINDS: tuple[str, ...] = ("space-time", "davie", "foster")
"""torchsde's Lévy-area approximations that provide the space-time area ``srk`` needs."""

_TREE_TOLERANCE = 1e-9
"""The ``"tree"`` Brownian motion resolves times to this fraction of the span."""


class SolverTimeBrownian:
    """A flowkit :class:`BrownianMotion` in time ``t`` seen in solver time ``u = sign * t``.

    For ``sign = -1`` the increment over ``[u_a, u_b]`` is ``W(-u_a) - W(-u_b)``
    (the motion ``B(u) = -W(-u)``), and the space-time Lévy area
    ``int (B - B(u_a)) du`` is ``h I - U`` for the area ``U`` of ``W`` over
    ``[-u_b, -u_a]``.
    """

    def __init__(self, brownian: BrownianMotion, sign: float, like: Tensor) -> None:
        self.brownian = brownian
        self.sign = sign
        self.shape = tuple(like.shape)
        self.dtype = like.dtype
        self.device = like.device
        self.levy_area_approximation = str(getattr(brownian, "levy_area_approximation", "none"))

    def _cast(self, value: Tensor) -> Tensor:
        return value.to(dtype=self.dtype, device=self.device)

    def __call__(
        self,
        ta: Tensor,
        tb: Tensor | None = None,
        return_U: bool = False,  # noqa: N803 - torchsde's names
        return_A: bool = False,  # noqa: N803
    ) -> Tensor | tuple[Tensor, ...]:
        if tb is None or return_A:
            raise ValueError(
                "flowkit's torchsde SDE integrators query Brownian increments and space-time "
                "Lévy areas only (diagonal noise); this solver asked for more."
            )
        lo, hi = (ta, tb) if self.sign > 0 else (-tb, -ta)
        if not return_U:
            return self._cast(self.brownian(lo, hi))
        increment, area = self.brownian(lo, hi, return_U=True)  # type: ignore[call-arg]
        increment, area = self._cast(increment), self._cast(area)
        if self.sign < 0:
            area = (hi - lo) * increment - area
        return increment, area


def seeded_brownian(
    kind: str,
    u0: float,
    u1: float,
    like: Tensor,
    step: float,
    levy_area: str,
    generator: torch.Generator | None,
) -> Any:
    """A torchsde Brownian motion of ``kind`` over ``[u0, u1]`` seeded from ``generator``.

    Arguments:
        kind: one of :data:`BROWNIAN_KINDS`.
        u0, u1: the interval in solver time (``u0 < u1``).
        like: a tensor of the increments' shape, dtype and device.
        step: the solver's step (a hint that speeds up ``"interval"``).
        levy_area: torchsde's ``levy_area_approximation``.
        generator: one integer is drawn from it as torchsde's ``entropy``.

    Returns:
        A ``torchsde.BrownianInterval``.
    """
    import torchsde

    device = generator.device if generator is not None else torch.device("cpu")
    seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=device))
    extra: dict[str, Any] = {"dt": step}
    if kind == "tree":
        extra = {"halfway_tree": True, "tol": _TREE_TOLERANCE * (u1 - u0)}
    elif kind == "path":
        extra["cache_size"] = None
    return torchsde.BrownianInterval(
        t0=u0,
        t1=u1,
        size=tuple(like.shape),
        dtype=like.dtype,
        device=like.device,
        entropy=seed,
        levy_area_approximation=levy_area,
        **extra,
    )
