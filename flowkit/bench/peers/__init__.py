"""Peers: the CNF implementations users would otherwise pick, run on flowkit's work.

Each peer wraps the *same* field module (the same weights), integrates with
the same tolerances and the same trace method, and exposes the same small
interface as flowkit's CNF in the benchmark (:class:`~flowkit.bench.peers.base.Peer`):

* ``torchdiffeq_plain`` -- a plain FFJORD-style CNF on ``torchdiffeq.odeint``,
  written for flowkit's benchmarks from the equations (always available);
* ``zuko`` -- ``zuko.flows.CNF`` with its network replaced by the field
  (skipped with a message when zuko is not installed: ``pip install flowkit[bench]``);
* ``torchdyn`` -- skipped with a message when not installed.

The peers live in the package (not in ``benchmarks/``) so that ``flowkit
bench`` runs them from an installed flowkit.
"""

from __future__ import annotations

from flowkit.bench.peers.base import PEERS, Peer, PeerUnavailableError, make_peer, peer_status

__all__ = ["PEERS", "Peer", "PeerUnavailableError", "make_peer", "peer_status"]
