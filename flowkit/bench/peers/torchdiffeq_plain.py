"""A plain FFJORD-style CNF on ``torchdiffeq``, written from the equations.

The baseline the framework is measured against: no registry, no plugins,
just the augmented ODE and one call of ``torchdiffeq.odeint`` (or
``odeint_adjoint``). The one plain reference of flowkit: ``flowkit bench``'s
``torchdiffeq_plain`` peer and ``benchmarks/training.py`` both use it.

The divergence keeps its graph (``create_graph``) only when grad mode is on,
i.e. when something will differentiate through it: not in ``log_prob`` under
``torch.no_grad`` nor in the forward solve of ``odeint_adjoint`` (which runs
without grad; its backward solve re-evaluates the dynamics with grad on).

Mathematics (flowkit's convention: base density at ``t0``, data at ``t1``):
for ``dz/dt = f(t, z)`` the log-density obeys ``d log p(z(t))/dt = -tr(df/dz)``.
Integrating the augmented state ``(z, a)`` with ``da/dt = tr(df/dz)`` backward
from ``(x, 0)`` at ``t1`` to ``t0`` gives ``a(t0) = -integral_{t0}^{t1} tr dt``,
hence ``log p(x) = log N(z(t0); 0, I) + a(t0)``.

The trace is either exact, with one vector-Jacobian product per dimension
(the loop over dimensions of the original FFJORD code), or Hutchinson's
estimate ``eps^T (df/dz) eps`` with ``eps ~ N(0, I)`` drawn once per solve.

References:
    | FFJORD: Free-form Continuous Dynamics for Scalable Reversible Generative
    | Models (Grathwohl et al., 2019). https://arxiv.org/abs/1810.01367
"""

from __future__ import annotations

import math

import torch
import torchdiffeq
from torch import Tensor, nn

from flowkit.bench.peers.base import Peer

__all__ = ["PlainCNF"]


class _Augmented(nn.Module):
    """``(z, a) -> (f(t, z), tr(df/dz))`` with an evaluation counter."""

    def __init__(self, field: nn.Module, trace: str) -> None:
        super().__init__()
        self.field = field
        self.trace = trace
        self.eps: Tensor | None = None
        self.calls = 0

    def forward(self, t: Tensor, state: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        self.calls += 1
        z = state[0]
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
                assert self.eps is not None
                vjp = torch.autograd.grad(dz, z, self.eps, create_graph=create_graph)[0]
                div = (vjp * self.eps).sum(dim=1)
        return dz, div


class PlainCNF(Peer):
    """A CNF on ``torchdiffeq`` written from the equations (see the module docstring).

    Arguments:
        field: the vector field ``f(t, z)``, shared with the compared models.
        dim: the data dimension.
        method: a ``torchdiffeq`` method name (``"dopri5"``, ``"rk4"``, ...).
        rtol, atol: tolerances of adaptive methods.
        step_size: the step of fixed-step methods (``None`` for adaptive ones).
        trace: ``"exact"`` (loop over dimensions) or ``"hutchinson"``.
        adjoint: use ``torchdiffeq.odeint_adjoint`` instead of backpropagating
            through the solver.
        t0, t1: the time span (base at ``t0``, data at ``t1``).
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
        if trace not in ("exact", "hutchinson"):
            raise ValueError(f"trace must be 'exact' or 'hutchinson', got {trace!r}.")
        self.aug = _Augmented(field, trace)
        self.dim = dim
        self.method = method
        self.rtol, self.atol = rtol, atol
        self.options = {"step_size": step_size} if step_size is not None else None
        self.adjoint = adjoint
        self.t0, self.t1 = t0, t1

    @property
    def field(self) -> nn.Module:
        """The vector field ``f(t, z)`` (shared with the caller, not copied)."""
        return self.aug.field

    def log_prob(self, x: Tensor) -> Tensor:
        """``log p(x)`` per sample (see the module docstring for the equations)."""
        if self.aug.trace == "hutchinson":
            self.aug.eps = torch.randn_like(x)
        t = torch.tensor([self.t1, self.t0], dtype=x.dtype, device=x.device)
        a0 = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
        solver = torchdiffeq.odeint_adjoint if self.adjoint else torchdiffeq.odeint
        kwargs = {"rtol": self.rtol, "atol": self.atol, "method": self.method}
        if self.options is not None:
            kwargs["options"] = self.options
        zs, as_ = solver(self.aug, (x, a0), t, **kwargs)
        z, a = zs[-1], as_[-1]
        log_base = -0.5 * (z**2).sum(dim=1) - 0.5 * self.dim * math.log(2 * math.pi)
        return log_base + a

    @property
    def evaluations(self) -> int:
        """Evaluations of the augmented dynamics so far (forward and backward)."""
        return self.aug.calls
