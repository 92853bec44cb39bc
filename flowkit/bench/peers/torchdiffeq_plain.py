"""A plain FFJORD-style CNF on ``torchdiffeq``, written from the equations.

The baseline the framework is measured against: no registry, no plugins,
just the augmented ODE and one call of ``torchdiffeq.odeint`` (or
``odeint_adjoint``). The one plain reference of flowkit: ``flowkit bench``'s
``torchdiffeq_plain`` peer and ``benchmarks/training.py`` both use it.

Mathematics (flowkit's convention: base density at ``t0``, data at ``t1``):
for ``dz/dt = f(t, z)`` the log-density obeys ``d log p(z(t))/dt = -tr(df/dz)``.
Integrating the augmented state ``(z, a)`` with ``da/dt = tr(df/dz)`` backward
from ``(x, 0)`` at ``t1`` to ``t0`` gives ``a(t0) = -integral_{t0}^{t1} tr dt``,
hence ``log p(x) = log N(z(t0); 0, I) + a(t0)``.

The augmented dynamics and both trace methods (exact, Hutchinson) are
:class:`~flowkit.bench.peers.plain_dynamics.PlainAugmentedDynamics`, shared
with the ``torchdyn`` peer, which subclasses :class:`PlainCNF` and replaces
only the solve.

References:
    | FFJORD: Free-form Continuous Dynamics for Scalable Reversible Generative
    | Models (Grathwohl et al., 2019). https://arxiv.org/abs/1810.01367
"""

from __future__ import annotations

from typing import Any

import torch
import torchdiffeq
from torch import Tensor, nn

from flowkit.bench.peers.base import Peer, PeerOptions
from flowkit.bench.peers.plain_dynamics import PlainAugmentedDynamics
from flowkit.distributions import standard_normal_log_prob

__all__ = ["PlainCNF"]


class PlainCNF(Peer):
    """A CNF on ``torchdiffeq`` written from the equations (see the module docstring).

    Arguments:
        field: the vector field ``f(t, z)``, shared with the compared models.
        options: the keyword options of :class:`~flowkit.bench.peers.base.PeerOptions`;
            ``method`` is a ``torchdiffeq`` method name, ``trace="exact"``
            loops over dimensions, ``adjoint`` uses ``torchdiffeq.odeint_adjoint``.
    """

    def __init__(self, field: nn.Module, **options: Any) -> None:
        super().__init__()
        o = PeerOptions(**options)
        self.aug = PlainAugmentedDynamics(field, o.trace)
        self.dim = o.dim
        self.method = o.method
        self.rtol, self.atol = o.rtol, o.atol
        self.options = {"step_size": o.step_size} if o.step_size is not None else None
        self.adjoint = o.adjoint
        self.t0, self.t1 = o.t0, o.t1

    @property
    def field(self) -> nn.Module:
        """The vector field ``f(t, z)`` (shared with the caller, not copied)."""
        return self.aug.field

    def log_prob(self, x: Tensor) -> Tensor:
        """``log p(x)`` per sample (see the module docstring for the equations)."""
        self.aug.prepare(x)
        z, log_det = self._integrate_back(x)
        return standard_normal_log_prob(z) + log_det

    def _integrate_back(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(z(t0), a(t0))``: the base point of ``x`` and ``-integral_{t0}^{t1} tr dt``."""
        t = torch.tensor([self.t1, self.t0], dtype=x.dtype, device=x.device)
        a0 = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
        solver = torchdiffeq.odeint_adjoint if self.adjoint else torchdiffeq.odeint
        kwargs = {"rtol": self.rtol, "atol": self.atol, "method": self.method}
        if self.options is not None:
            kwargs["options"] = self.options
        zs, as_ = solver(self.aug, (x, a0), t, **kwargs)
        return zs[-1], as_[-1]

    @property
    def evaluations(self) -> int:
        """Evaluations of the augmented dynamics so far (forward and backward)."""
        return self.aug.calls
