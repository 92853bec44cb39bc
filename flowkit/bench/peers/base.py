"""The peer interface and the table of peers by name."""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from dataclasses import dataclass

from torch import Tensor, nn

from flowkit.errors import FlowkitError

__all__ = [
    "PEERS",
    "Peer",
    "PeerOptions",
    "PeerUnavailableError",
    "make_peer",
    "peer_status",
]


class PeerUnavailableError(FlowkitError):
    """A peer library that is not installed (or cannot run this configuration)."""


@dataclass(frozen=True)
class PeerOptions:
    """The options every peer's constructor takes, with their defaults (one list for all).

    Attributes:
        dim: the data dimension.
        method: the library's solver name (``"dopri5"``, ``"rk4"``, ...).
        rtol, atol: tolerances of adaptive methods.
        step_size: the step of fixed-step methods (``None`` for adaptive ones).
        trace: ``"exact"`` or ``"hutchinson"``.
        adjoint: use the library's adjoint instead of backpropagating through
            the solver (where the library has the choice).
        t0, t1: the time span (base at ``t0``, data at ``t1``).
    """

    dim: int
    method: str = "dopri5"
    rtol: float = 1e-5
    atol: float = 1e-5
    step_size: float | None = None
    trace: str = "exact"
    adjoint: bool = False
    t0: float = 0.0
    t1: float = 1.0


class Peer(nn.Module, ABC):
    """A CNF from another implementation, on a given field.

    Contract:
        * The constructor takes the field module (shared weights, ``forward(t, x)``,
          flowkit's convention: base at ``t0``, data at ``t1``) and the
          keyword options of :class:`PeerOptions`; an unknown option raises
          ``TypeError``.
        * :meth:`log_prob` returns ``log p(x)`` of shape ``(batch,)``, with
          gradients to the field's parameters when grad mode is on.
        * :attr:`evaluations` counts every evaluation of the augmented
          dynamics so far; the benchmark reads it before and after
          ``log_prob`` and ``loss.backward()`` to get forward and backward
          function evaluations.
    """

    @abstractmethod
    def log_prob(self, x: Tensor) -> Tensor:
        """``log p(x)`` per sample."""

    @property
    @abstractmethod
    def evaluations(self) -> int:
        """Evaluations of the augmented dynamics so far."""


PEERS: dict[str, tuple[str, str | None]] = {
    "torchdiffeq_plain": ("flowkit.bench.peers.torchdiffeq_plain:PlainCNF", "torchdiffeq"),
    "zuko": ("flowkit.bench.peers.zuko_cnf:ZukoCNF", "zuko"),
    "torchdyn": ("flowkit.bench.peers.torchdyn_cnf:TorchdynCNF", "torchdyn"),
}
"""Peer name -> (``module:class``, the library it needs)."""


def peer_status(name: str) -> str | None:
    """``None`` when the peer can run, else a message saying why not and how to fix it."""
    if name not in PEERS:
        return f"unknown peer {name!r}; peers: {', '.join(PEERS)}"
    library = PEERS[name][1]
    if library is None:
        return None
    try:
        importlib.import_module(library)
    except ImportError:
        hint = (
            " (its releases on PyPI require a newer torch than this environment's, so flowkit's "
            "`bench` extra does not install it)"
            if name == "torchdyn"
            else " (install it with `pip install flowkit[bench]`)"
        )
        return f"peer {name!r} skipped: {library} is not installed{hint}"
    return None


def make_peer(name: str, field: nn.Module, **options: object) -> Peer:
    """Build the peer ``name`` around ``field``.

    Raises:
        PeerUnavailableError: when its library is not installed.
    """
    problem = peer_status(name)
    if problem is not None:
        raise PeerUnavailableError(problem)
    module_name, cls_name = PEERS[name][0].split(":")
    cls = getattr(importlib.import_module(module_name), cls_name)
    return cls(field, **options)  # type: ignore[no-any-return]
