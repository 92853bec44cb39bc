"""torchdyn's ``NeuralODE`` running the same augmented CNF dynamics (when installed).

torchdyn integrates one tensor state, so the augmented state is the
concatenation ``[z, a]`` with ``da/ds = tr(df/dz)`` (exact, one
vector-Jacobian product per dimension, or Hutchinson with a fixed probe).
As for zuko, time is reversed onto ``s in [0, 1]`` from the data at ``t1`` to
the base at ``t0``: ``g(s, y) = -(t1 - t0) F(t1 - s (t1 - t0), y)``; then
``log p(x) = log N(z(t0); 0, I) - a(t0)`` with ``a`` integrated in ``s``.

Not exercised in flowkit's own test run: torchdyn's releases on PyPI require a
newer torch than flowkit's pinned one, so ``peer_status("torchdyn")`` reports it
missing and the suites skip it with a message.

References:
    | torchdyn: https://github.com/DiffEqML/torchdyn
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from flowkit.bench.peers.base import Peer

__all__ = ["TorchdynCNF"]


class _AugmentedReversed(nn.Module):
    """``[z, a] -> [g, div]`` in reversed time ``s``, counting evaluations."""

    def __init__(self, field: nn.Module, trace: str, t0: float, t1: float) -> None:
        super().__init__()
        self.field = field
        self.trace = trace
        self.t0, self.t1 = t0, t1
        self.eps: Tensor | None = None
        self.calls = 0

    def forward(self, s: Tensor, y: Tensor) -> Tensor:
        self.calls += 1
        span = self.t1 - self.t0
        z = y[:, :-1]
        create_graph = torch.is_grad_enabled()
        with torch.enable_grad():
            if not z.requires_grad:
                z = z.detach().requires_grad_(True)
            dz = -span * self.field(self.t1 - s * span, z)
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
                assert self.eps is not None
                vjp = torch.autograd.grad(dz, z, self.eps, create_graph=create_graph)[0]
                div = (vjp * self.eps).sum(dim=1)
        return torch.cat([dz, div[:, None]], dim=1)


class TorchdynCNF(Peer):
    """A CNF on ``torchdyn.core.NeuralODE`` (see the module docstring).

    Arguments:
        field, dim, method, rtol, atol, step_size, trace, adjoint, t0, t1: as
            for :class:`~flowkit.bench.peers.torchdiffeq_plain.PlainCNF`;
            ``adjoint`` selects torchdyn's ``"adjoint"`` sensitivity instead
            of ``"autograd"``.
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
        adjoint: bool = False,
        t0: float = 0.0,
        t1: float = 1.0,
    ) -> None:
        super().__init__()
        from torchdyn.core import NeuralODE

        if trace not in ("exact", "hutchinson"):
            raise ValueError(f"trace must be 'exact' or 'hutchinson', got {trace!r}.")
        if step_size is not None:
            raise ValueError("the torchdyn peer runs adaptive solvers only (step_size=None).")
        self.aug = _AugmentedReversed(field, trace, t0, t1)
        self.dim = dim
        self.node = NeuralODE(
            self.aug,
            solver=method,
            sensitivity="adjoint" if adjoint else "autograd",
            atol=atol,
            rtol=rtol,
        )

    def log_prob(self, x: Tensor) -> Tensor:
        """``log p(x)`` per sample."""
        if self.aug.trace == "hutchinson":
            self.aug.eps = torch.randn_like(x)
        y0 = torch.cat([x, torch.zeros_like(x[:, :1])], dim=1)
        span = torch.tensor([0.0, 1.0], dtype=x.dtype, device=x.device)
        _, trajectory = self.node(y0, span)
        final = trajectory[-1]
        z, a = final[:, :-1], final[:, -1]
        log_base = -0.5 * (z**2).sum(dim=1) - 0.5 * self.dim * math.log(2 * math.pi)
        return log_base - a

    @property
    def evaluations(self) -> int:
        """Evaluations of the augmented dynamics so far."""
        return self.aug.calls
