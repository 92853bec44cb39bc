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

import zuko
from torch import Tensor, nn

from flowkit.bench.peers.base import Peer

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
        dim: the data dimension.
        method: must be ``"dopri5"`` (zuko has no other solver).
        rtol, atol: zuko's tolerances.
        step_size: unsupported (zuko is adaptive only); must be ``None``.
        trace: ``"exact"`` or ``"hutchinson"``.
        adjoint: ignored in effect: zuko always uses its adaptive-checkpoint
            adjoint; accepted so every peer takes the same options.
        t0, t1: the time span (base at ``t0``, data at ``t1``).

    Raises:
        ValueError: for a method other than ``dopri5``, a step size, or an
            unknown trace.
    """

    def __init__(
        self,
        field: nn.Module,
        *,
        dim: int,
        method: str = "dopri5",
        rtol: float = 1e-5,
        atol: float = 1e-5,
        step_size: float | None = None,
        trace: str = "exact",
        adjoint: bool = True,
        t0: float = 0.0,
        t1: float = 1.0,
    ) -> None:
        super().__init__()
        if method != "dopri5" or step_size is not None:
            raise ValueError(f"zuko only has an adaptive dopri5 solver, not {method!r}.")
        if trace not in ("exact", "hutchinson"):
            raise ValueError(f"trace must be 'exact' or 'hutchinson', got {trace!r}.")
        self.flow = zuko.flows.CNF(dim, atol=atol, rtol=rtol, exact=trace == "exact")
        transform = self.flow.transform
        transform.ode = _Reversed(field, t0, t1)
        # zuko calls ``self.f(t, x, c)``; route it to the reversed field.
        transform.f = lambda t, x, c=None: transform.ode(t, x)

    def log_prob(self, x: Tensor) -> Tensor:
        """``log p(x)`` per sample; parameters get gradients in training mode."""
        return self.flow().log_prob(x)  # type: ignore[no-any-return]

    @property
    def evaluations(self) -> int:
        """Evaluations of the field so far (one per augmented-dynamics call)."""
        return int(self.flow.transform.ode.calls)
