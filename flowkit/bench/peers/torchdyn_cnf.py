"""torchdyn's ``NeuralODE`` running the plain CNF's augmented dynamics (when installed).

The dynamics are :class:`~flowkit.bench.peers.plain_dynamics.PlainAugmentedDynamics`,
the same code as the ``torchdiffeq_plain`` peer's (exact trace or Hutchinson
with a fixed probe); only the solve differs. torchdyn integrates one tensor
state, so the augmented state is the concatenation ``[z, a]``, and time is
reversed onto ``s in [0, 1]`` from the data at ``t1`` to the base at ``t0``:
``g(s, y) = -(t1 - t0) F(t1 - s (t1 - t0), y)``. Integrated in ``s``,
``a(1) = -integral_{t0}^{t1} tr(df/dz) dt``, hence
``log p(x) = log N(z(t0); 0, I) + a(1)``, exactly as for the plain peer.

Not exercised against the real library in flowkit's own test run: torchdyn's
releases on PyPI require a newer torch than flowkit's pinned one, so
``peer_status("torchdyn")`` reports it missing and the suites skip it with a
message (the tests run this peer on a stand-in ``NeuralODE``).

References:
    | torchdyn: https://github.com/DiffEqML/torchdyn
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from flowkit.bench.peers.plain_dynamics import PlainAugmentedDynamics
from flowkit.bench.peers.torchdiffeq_plain import PlainCNF

__all__ = ["TorchdynCNF"]


class _ReversedConcatenated(nn.Module):
    """``[z, a] -> [g, div g]`` in reversed time ``s`` for torchdyn's one-tensor state."""

    def __init__(self, dynamics: PlainAugmentedDynamics, t0: float, t1: float) -> None:
        super().__init__()
        self.dynamics = dynamics
        self.t0, self.t1 = t0, t1

    def forward(self, s: Tensor, y: Tensor) -> Tensor:
        span = self.t1 - self.t0
        dz, div = self.dynamics.velocity_and_divergence(self.t1 - s * span, y[:, :-1])
        return torch.cat([-span * dz, -span * div[:, None]], dim=1)


class TorchdynCNF(PlainCNF):
    """A CNF on ``torchdyn.core.NeuralODE`` (see the module docstring).

    Arguments:
        field, options: as for :class:`~flowkit.bench.peers.torchdiffeq_plain.PlainCNF`;
            ``method`` is a torchdyn solver name and ``adjoint`` selects
            torchdyn's ``"adjoint"`` sensitivity instead of ``"autograd"``.

    Raises:
        ValueError: for a step size (the peer runs adaptive solvers only) or
            an unknown trace.
    """

    def __init__(self, field: nn.Module, **options: Any) -> None:
        super().__init__(field, **options)
        from torchdyn.core import NeuralODE

        if self.options is not None:
            raise ValueError("the torchdyn peer runs adaptive solvers only (step_size=None).")
        self.node = NeuralODE(
            _ReversedConcatenated(self.aug, self.t0, self.t1),
            solver=self.method,
            sensitivity="adjoint" if self.adjoint else "autograd",
            atol=self.atol,
            rtol=self.rtol,
        )

    def _integrate_back(self, x: Tensor) -> tuple[Tensor, Tensor]:
        y0 = torch.cat([x, torch.zeros_like(x[:, :1])], dim=1)
        span = torch.tensor([0.0, 1.0], dtype=x.dtype, device=x.device)
        _, trajectory = self.node(y0, span)
        final = trajectory[-1]
        return final[:, :-1], final[:, -1]
