"""The augmented dynamics of a plain FFJORD-style CNF, written once for every plain peer.

For ``dz/dt = f(t, z)`` the augmented state ``(z, a)`` obeys
``da/dt = tr(df/dz)``. The trace is either exact, with one vector-Jacobian
product per dimension (the loop over dimensions of the original FFJORD
code), or Hutchinson's estimate ``eps^T (df/dz) eps`` with ``eps ~ N(0, I)``
drawn once per solve by :meth:`PlainAugmentedDynamics.prepare`.

The divergence keeps its graph (``create_graph``) only when grad mode is on,
i.e. when something will differentiate through it: not in ``log_prob`` under
``torch.no_grad`` nor in the forward solve of an adjoint method (which runs
without grad; its backward solve re-evaluates the dynamics with grad on).

References:
    | FFJORD: Free-form Continuous Dynamics for Scalable Reversible Generative
    | Models (Grathwohl et al., 2019). https://arxiv.org/abs/1810.01367
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["TRACES", "PlainAugmentedDynamics"]

TRACES = ("exact", "hutchinson")
"""The trace methods of the plain peers."""


class PlainAugmentedDynamics(nn.Module):
    """``(t, (z, a)) -> (f(t, z), tr(df/dz))`` with an evaluation counter.

    Arguments:
        field: the vector field ``f(t, z)`` (shared, not copied).
        trace: ``"exact"`` or ``"hutchinson"``.

    Raises:
        ValueError: for another trace method.
    """

    def __init__(self, field: nn.Module, trace: str) -> None:
        super().__init__()
        if trace not in TRACES:
            raise ValueError(f"trace must be 'exact' or 'hutchinson', got {trace!r}.")
        self.field = field
        self.trace = trace
        self.eps: Tensor | None = None
        self.calls = 0

    def prepare(self, x: Tensor) -> None:
        """Draw Hutchinson's probe for the solve starting at ``x`` (nothing for ``exact``)."""
        if self.trace == "hutchinson":
            self.eps = torch.randn_like(x)

    def velocity_and_divergence(self, t: Tensor | float, z: Tensor) -> tuple[Tensor, Tensor]:
        """``(f(t, z), tr(df/dz))`` per row, counting one evaluation."""
        self.calls += 1
        create_graph = torch.is_grad_enabled()
        with torch.enable_grad():
            if not z.requires_grad:
                z = z.detach().requires_grad_(True)
            dz = self.field(t, z)
            if self.trace == "exact":
                div = torch.zeros(z.shape[0], dtype=z.dtype, device=z.device)
                last = z.shape[1] - 1
                for i in range(z.shape[1]):
                    row = torch.autograd.grad(
                        dz[:, i].sum(),
                        z,
                        create_graph=create_graph,
                        retain_graph=create_graph or i < last,
                    )[0]
                    div = div + row[:, i]
            else:
                if self.eps is None:
                    raise RuntimeError(
                        "call prepare(x) before a Hutchinson solve to draw the probe."
                    )
                vjp = torch.autograd.grad(dz, z, self.eps, create_graph=create_graph)[0]
                div = (vjp * self.eps).sum(dim=1)
        return dz, div

    def forward(self, t: Tensor, state: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        """The augmented right-hand side ``(dz/dt, da/dt)`` for ``state = (z, a)``."""
        return self.velocity_and_divergence(t, state[0])
