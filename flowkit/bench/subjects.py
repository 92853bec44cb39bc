"""The models a suite measures: flowkit's CNF or a peer, behind one small interface.

:func:`build_model` gives a :class:`Model` whose :meth:`~Model.log_prob` and
:meth:`~Model.train_step` report function evaluations forward and backward
the same way for flowkit (from ``CNF.last_stats``) and for every peer (from
its evaluation counter).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from flowkit.bench.peers import make_peer
from flowkit.bench.timing import stopwatch
from flowkit.interfaces import AdaptiveIntegrator, FixedStepIntegrator
from flowkit.registry import Registry, get_registry

__all__ = [
    "Model",
    "PEER_TRACE",
    "TORCHDIFFEQ_METHODS",
    "build_model",
    "integrator_options",
    "peer_method",
]

TORCHDIFFEQ_METHODS = {
    "dopri5": "dopri5",
    "dopri8": "dopri8",
    "bosh3": "bosh3",
    "adaptive_heun": "adaptive_heun",
    "euler": "euler",
    "midpoint": "midpoint",
    "heun": "heun2",
    "rk4": "rk4",
    "rk4_38": "rk4",
}
"""flowkit integrator name -> the ``torchdiffeq`` method doing the same arithmetic
(``rk4_38`` maps to torchdiffeq's ``rk4``, which is its 3/8-rule variant)."""

PEER_TRACE = {"exact": "exact", "exact_loop": "exact", "hutchinson": "hutchinson"}
"""flowkit trace name -> the peers' trace method (peers compute exact traces in a
loop over dimensions; ``exact`` vs that loop is the vectorisation goal)."""


def peer_method(integrator: str) -> str | None:
    """The ``torchdiffeq`` method for a flowkit integrator name, or ``None``."""
    if integrator.startswith("torchdiffeq."):
        return integrator.split(".", 1)[1]
    return TORCHDIFFEQ_METHODS.get(integrator)


def integrator_options(
    registry: Registry, integrator: str, *, rtol: float, atol: float, steps: int
) -> dict[str, Any]:
    """Tolerances for adaptive integrators, a step count for fixed-step ones.

    Chosen from the option base the integrator's class declares
    (:class:`~flowkit.interfaces.AdaptiveIntegrator`: ``rtol``/``atol``;
    :class:`~flowkit.interfaces.FixedStepIntegrator`: ``n_steps``, equal steps
    across the whole span), so third-party integrators deriving from either
    work unchanged; one deriving from neither keeps its own defaults.
    """
    factory = registry.get("integrator", integrator).factory
    if isinstance(factory, type) and issubclass(factory, AdaptiveIntegrator):
        return {"rtol": rtol, "atol": atol}
    if isinstance(factory, type) and issubclass(factory, FixedStepIntegrator):
        return {"n_steps": steps}
    return {}


@dataclass
class StepResult:
    """Wall times and function evaluations of one measured call."""

    seconds: float
    nfe: int
    nfe_backward: int = 0


class Model:
    """flowkit's CNF or a peer, measured the same way.

    Arguments:
        module: the model (``flowkit.cnf.CNF`` or a :class:`~flowkit.bench.peers.Peer`).
        is_flowkit: whether ``module`` is flowkit's CNF (statistics come from
            ``last_stats``) or a peer (from its evaluation counter).
    """

    def __init__(self, module: nn.Module, *, is_flowkit: bool) -> None:
        self.module = module
        self.is_flowkit = is_flowkit

    def _count(self) -> int:
        return 0 if self.is_flowkit else int(self.module.evaluations)  # type: ignore[union-attr]

    def log_prob(self, x: Tensor) -> tuple[Tensor, StepResult]:
        """``log p(x)`` under ``torch.no_grad``, timed (device work included)."""
        before = self._count()
        with stopwatch(x, self.module) as clock, torch.no_grad():
            out = self.module.log_prob(x)  # type: ignore[operator]
        nfe = self.module.last_stats.nfe if self.is_flowkit else self._count() - before
        return out, StepResult(clock.seconds, int(nfe))

    def train_step(self, x: Tensor) -> tuple[Tensor, StepResult]:
        """One training step's forward and backward (``-mean log p(x)``), timed.

        Gradients are left in the parameters' ``.grad`` (zeroed first); no
        optimiser step is taken, so every repetition sees the same weights.
        """
        for p in self.module.parameters():
            p.grad = None
        before = self._count()
        with stopwatch(x, self.module) as clock:
            loss = -self.module.log_prob(x).mean()  # type: ignore[operator]
            middle = self._count()
            loss.backward()
        if self.is_flowkit:
            stats = self.module.last_stats
            nfe, nfe_b = stats.nfe, stats.backward_nfe
        else:
            nfe, nfe_b = middle - before, self._count() - middle
        return loss.detach(), StepResult(clock.seconds, int(nfe), int(nfe_b))


def build_model(
    subject: str,
    field: nn.Module,
    *,
    dim: int,
    integrator: str,
    trace: str,
    gradient: str,
    rtol: float,
    atol: float,
    steps: int,
    registry: Registry | None = None,
) -> Model:
    """Build ``subject`` (``"flowkit"`` or a peer name) around ``field``.

    Raises:
        PeerUnavailableError: for a peer whose library is missing.
        ValueError: for a configuration a peer cannot run.
    """
    registry = registry or get_registry()
    if subject == "flowkit":
        from flowkit.cnf import CNF

        cnf = CNF(
            field,
            integrator=integrator,
            trace=trace,
            gradient=gradient,
            dim=dim,
            integrator_options=integrator_options(
                registry, integrator, rtol=rtol, atol=atol, steps=steps
            ),
        )
        return Model(cnf, is_flowkit=True)
    method = peer_method(integrator)
    if method is None or trace not in PEER_TRACE:
        raise ValueError(f"peer {subject!r} has no equivalent of {integrator!r}/{trace!r}.")
    adaptive = bool(registry.get("integrator", integrator).capabilities.get("adaptive"))
    peer = make_peer(
        subject,
        field,
        dim=dim,
        method=method,
        rtol=rtol,
        atol=atol,
        step_size=None if adaptive else 1.0 / steps,
        trace=PEER_TRACE[trace],
        adjoint=gradient != "backprop",
    )
    return Model(peer, is_flowkit=False)
