"""Built-in regularizers of RNODE: kinetic energy and the Jacobian Frobenius norm.

Each is a rate ``r(t, x)`` per sample that the CNF integrates as an extra state
of its augmented dynamics, so the penalty is ``integral_{t0}^{t1} r dt`` along
the sample's path. Penalising both makes the learned dynamics straighter and
smoother, which lets an adaptive solver take fewer, larger steps.

References:
    Finlay, Jacobsen, Nurbekyan, Oberman. "How to train your neural ODE: the
    world of Jacobian and kinetic regularization", ICML 2020.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
from torch import Tensor, nn

from flowkit.errors import FlowkitError
from flowkit.hookspecs import Register, hookimpl
from flowkit.interfaces import Regularizer

__all__ = [
    "JacobianFrobenius",
    "JacobianFrobeniusExact",
    "KineticEnergy",
    "flowkit_register_regularizers",
]

ProbeDistribution = Literal["gaussian", "rademacher"]


def _rows(x: Tensor) -> Tensor:
    return x.reshape(x.shape[0], -1)


def _vjp_graph(field: nn.Module, t: Tensor, x: Tensor, dx: Tensor) -> tuple[Tensor, Tensor]:
    """``(x, dx)`` such that ``dx`` has a graph to ``x`` (recomputing when it has not)."""
    if x.requires_grad and dx.requires_grad:
        return x, dx
    if torch.is_grad_enabled():
        raise FlowkitError(
            "A Jacobian regularizer needs dx = f(t, x) computed from an x that requires "
            "grad; compute dx inside torch.enable_grad() with x.requires_grad_(True)."
        )
    with torch.enable_grad():  # evaluation under no_grad: a local graph, no history kept
        x_local = x.detach().requires_grad_(True)
        return x_local, field(t, x_local)


class KineticEnergy(Regularizer):
    """Kinetic energy ``||f(t, x)||^2`` of the flow (RNODE's first term).

    Penalising it favours straight, constant-speed paths (optimal transport).
    It needs no derivatives, only the already computed ``dx``.
    """

    stochastic: ClassVar[bool] = False

    def rate(
        self, field: nn.Module, t: Tensor, x: Tensor, dx: Tensor, probes: Tensor | None = None
    ) -> Tensor:
        """``||dx||^2`` per sample, shape ``(batch,)``."""
        return _rows(dx).pow(2).sum(dim=1)


class JacobianFrobenius(Regularizer):
    """Hutchinson estimate ``||eps^T df/dx||^2`` of the squared Frobenius norm.

    ``E[||eps^T J||^2] = tr(J J^T) = ||J||_F^2`` for probes with identity
    covariance; one vector-Jacobian product per step (rows are independent, so
    one product serves the whole batch). The probe is drawn once per solve.

    Arguments:
        distribution: ``"gaussian"`` or ``"rademacher"`` probes.

    Raises:
        ValueError: for another distribution.
    """

    stochastic: ClassVar[bool] = True

    def __init__(self, *, distribution: ProbeDistribution = "gaussian") -> None:
        if distribution not in ("gaussian", "rademacher"):
            raise ValueError(
                f"distribution must be 'gaussian' or 'rademacher', got {distribution!r}."
            )
        self.distribution = distribution

    def sample_probes(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """One probe per sample, shaped like ``x``, drawn on ``x``'s device."""
        if self.distribution == "gaussian":
            return torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
        bits = torch.randint(0, 2, x.shape, generator=generator, device=x.device)
        return (2 * bits - 1).to(x.dtype)

    def rate(
        self, field: nn.Module, t: Tensor, x: Tensor, dx: Tensor, probes: Tensor | None = None
    ) -> Tensor:
        """``||eps^T df/dx||^2`` per sample, shape ``(batch,)``.

        Raises:
            FlowkitError: if no probes are given (call :meth:`sample_probes` once per solve).
        """
        if probes is None:
            raise FlowkitError(
                "jacobian_frobenius is stochastic: draw probes once per solve with "
                "sample_probes(x) and pass them to every rate() call."
            )
        track = torch.is_grad_enabled()
        x, dx = _vjp_graph(field, t, x, dx)
        with torch.enable_grad():
            (vjp,) = torch.autograd.grad(dx, x, probes, create_graph=track)
            rate = _rows(vjp).pow(2).sum(dim=1)
        return rate if track else rate.detach()


class JacobianFrobeniusExact(Regularizer):
    """The exact squared Frobenius norm ``||df/dx||_F^2``, with ``dim`` vector-Jacobian products.

    Deterministic; costs ``dim`` times the Hutchinson estimate, so meant for
    low dimensions and for checking the estimate.
    """

    stochastic: ClassVar[bool] = False

    def rate(
        self, field: nn.Module, t: Tensor, x: Tensor, dx: Tensor, probes: Tensor | None = None
    ) -> Tensor:
        """``sum_i ||e_i^T df/dx||^2`` per sample, shape ``(batch,)``."""
        track = torch.is_grad_enabled()
        x, dx = _vjp_graph(field, t, x, dx)
        with torch.enable_grad():
            flat = _rows(dx)
            total = torch.zeros(flat.shape[0], dtype=flat.dtype, device=flat.device)
            for i in range(flat.shape[1]):
                (row,) = torch.autograd.grad(
                    flat[:, i].sum(), x, create_graph=track, retain_graph=True
                )
                total = total + _rows(row).pow(2).sum(dim=1)
        return total if track else total.detach()


@hookimpl
def flowkit_register_regularizers(register: Register) -> None:
    """Register the built-in regularizers."""
    register("kinetic_energy", KineticEnergy, aliases=("kinetic",))
    register("jacobian_frobenius", JacobianFrobenius, aliases=("jacobian", "frobenius"))
    register("jacobian_frobenius_exact", JacobianFrobeniusExact)
