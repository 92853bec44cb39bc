"""zuko's CNF (``zuko.flows.CNF``) run on flowkit's field and time convention.

zuko integrates from the data at ``s = 0`` to its base at ``s = 1`` with its
own adaptive Dormand--Prince solver and adaptive-checkpoint adjoint. Its
network is replaced by the benchmark's field, reversed in time,
``g(s, x) = -(t1 - t0) f(t1 - s (t1 - t0), x)``, which is the same ODE
traversed the other way: the density is the same as flowkit's for the same
field, so log-densities can be compared directly. Trace: zuko's ``exact``
(batched Jacobian) or its Hutchinson estimate.

References:
    | zuko: normalizing flows in PyTorch. https://github.com/probabilists/zuko
"""

from __future__ import annotations

from typing import Any

import zuko
from torch import Tensor, nn

from flowkit.bench.peers.base import Peer, PeerOptions
from flowkit.bench.peers.plain_dynamics import TRACES

__all__ = ["ZukoCNF"]


class _Reversed(nn.Module):
    """The field with time reversed onto zuko's ``[0, 1]``, counting evaluations."""

    def __init__(self, field: nn.Module, t0: float, t1: float) -> None:
        super().__init__()
        self.field = field
        self.t0, self.t1 = t0, t1
        self.calls = 0

    def forward(self, s: Tensor, x: Tensor) -> Tensor:
        self.calls += 1
        span = self.t1 - self.t0
        return -span * self.field(self.t1 - s * span, x)


class ZukoCNF(Peer):
    """``zuko.flows.CNF`` on a given field.

    Arguments:
        field: the vector field ``f(t, z)`` (flowkit's convention).
        options: the keyword options of :class:`~flowkit.bench.peers.base.PeerOptions`;
            ``method`` must be ``"dopri5"`` (zuko has no other solver) and
            ``step_size`` ``None`` (zuko is adaptive only); ``adjoint`` is
            ignored in effect: zuko always uses its adaptive-checkpoint adjoint.

    Raises:
        ValueError: for a method other than ``dopri5``, a step size, or an
            unknown trace.
    """

    def __init__(self, field: nn.Module, **options: Any) -> None:
        super().__init__()
        o = PeerOptions(**options)
        if o.method != "dopri5" or o.step_size is not None:
            raise ValueError(f"zuko only has an adaptive dopri5 solver, not {o.method!r}.")
        if o.trace not in TRACES:
            raise ValueError(f"trace must be 'exact' or 'hutchinson', got {o.trace!r}.")
        self.flow = zuko.flows.CNF(o.dim, atol=o.atol, rtol=o.rtol, exact=o.trace == "exact")
        transform = self.flow.transform
        transform.ode = _Reversed(field, o.t0, o.t1)
        # zuko calls ``self.f(t, x, c)``; route it to the reversed field.
        transform.f = lambda t, x, c=None: transform.ode(t, x)

    def log_prob(self, x: Tensor) -> Tensor:
        """``log p(x)`` per sample; parameters get gradients in training mode."""
        return self.flow().log_prob(x)  # type: ignore[no-any-return]

    @property
    def evaluations(self) -> int:
        """Evaluations of the field so far (one per augmented-dynamics call)."""
        return int(self.flow.transform.ode.calls)
