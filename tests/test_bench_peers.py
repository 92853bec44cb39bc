"""Peers compute the same CNF as flowkit: checked against the affine closed form."""

from __future__ import annotations

import pytest
import torch
from registry_helpers import suite_registry

from flowkit.bench.peers import PEERS, PeerUnavailableError, make_peer, peer_status
from flowkit.bench.suites.accuracy import closed_form_log_prob
from flowkit.cnf import CNF


def _linear_field(d: int, seed: int) -> torch.nn.Module:
    g = torch.Generator().manual_seed(seed)
    matrix = 0.5 * torch.randn(d, d, generator=g)
    bias = 0.3 * torch.randn(d, generator=g)
    return suite_registry().create("vector_field", "linear", dim=d, matrix=matrix, bias=bias)


AVAILABLE = [name for name in PEERS if peer_status(name) is None]


@pytest.mark.parametrize("peer", AVAILABLE)
@pytest.mark.parametrize("adjoint", [False, True])
def test_peer_log_prob_and_gradient_match_closed_form(peer: str, adjoint: bool) -> None:
    _check_against_closed_form(peer, adjoint)


def _check_against_closed_form(peer: str, adjoint: bool) -> None:
    """``log p`` and parameter gradients of ``peer`` on an affine field vs the closed form."""
    d = 3
    field = _linear_field(d, seed=1)
    x = torch.randn(16, d, generator=torch.Generator().manual_seed(2))
    model = make_peer(peer, field, dim=d, rtol=1e-9, atol=1e-9, trace="exact", adjoint=adjoint)
    before = model.evaluations
    logp = model.log_prob(x)
    middle = model.evaluations
    (-logp.mean()).backward()
    assert middle - before > 0
    a = field.matrix.detach().clone().requires_grad_(True)
    b = field.bias.detach().clone().requires_grad_(True)
    ref = closed_form_log_prob(a, b, x)
    (-ref.mean()).backward()
    torch.testing.assert_close(logp.detach(), ref.detach(), rtol=0, atol=1e-6)
    torch.testing.assert_close(field.matrix.grad, a.grad, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(field.bias.grad, b.grad, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("peer", AVAILABLE)
def test_peer_hutchinson_is_unbiased(peer: str) -> None:
    d = 3
    field = _linear_field(d, seed=3)
    x = torch.randn(8, d, generator=torch.Generator().manual_seed(4))
    model = make_peer(peer, field, dim=d, rtol=1e-8, atol=1e-8, trace="hutchinson")
    torch.manual_seed(0)
    with torch.no_grad():  # 64 replicas of the batch in one solve, each row its own probe
        draws = model.log_prob(x.repeat(64, 1)).reshape(64, -1)
        ref = closed_form_log_prob(field.matrix, field.bias, x)
    mean, sem = draws.mean(0), draws.std(0) / 64**0.5
    assert bool(((mean - ref).abs() <= 4 * sem + 1e-6).all())
    assert bool((draws.std(0) > 0).all())  # really stochastic


def test_peers_and_flowkit_agree_on_a_neural_field() -> None:
    d = 2
    torch.manual_seed(5)
    field = suite_registry().create("vector_field", "mlp", dim=d, hidden=(16, 16))
    x = torch.randn(8, d)
    cnf = CNF(
        field, "dopri5", "exact", "backprop", dim=d, integrator_options={"rtol": 1e-9, "atol": 1e-9}
    )
    with torch.no_grad():
        ref = cnf.log_prob(x)
        for peer in AVAILABLE:
            model = make_peer(peer, field, dim=d, rtol=1e-9, atol=1e-9, trace="exact")
            torch.testing.assert_close(model.log_prob(x), ref, rtol=0, atol=1e-6)


def test_unavailable_peer_is_skipped_with_a_message(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(PEERS, "ghost", ("nowhere:Nothing", "no_such_library_xyz"))
    message = peer_status("ghost")
    assert message is not None and "no_such_library_xyz is not installed" in message
    with pytest.raises(PeerUnavailableError, match="not installed"):
        make_peer("ghost", torch.nn.Linear(1, 1), dim=1)
    assert "unknown peer" in (peer_status("nobody") or "")


class _StandInNeuralODE(torch.nn.Module):
    """torchdyn's ``NeuralODE`` interface on ``torchdiffeq`` (torchdyn needs a newer torch)."""

    def __init__(
        self, vector_field: torch.nn.Module, *, solver: str, sensitivity: str, **tol: float
    ) -> None:
        super().__init__()
        self.vf, self.solver, self.tol = vector_field, solver, tol
        assert sensitivity in ("autograd", "adjoint")

    def forward(self, y0: torch.Tensor, t_span: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        import torchdiffeq

        return t_span, torchdiffeq.odeint(self.vf, y0, t_span, method=self.solver, **self.tol)


def test_torchdyn_peer_matches_closed_form_on_a_stand_in(monkeypatch: pytest.MonkeyPatch) -> None:
    """The torchdyn peer's sign and time reversal, run on a stand-in ``NeuralODE``."""
    import sys
    import types

    core = types.ModuleType("torchdyn.core")
    core.NeuralODE = _StandInNeuralODE  # type: ignore[attr-defined]
    package = types.ModuleType("torchdyn")
    package.core = core  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "torchdyn", package)
    monkeypatch.setitem(sys.modules, "torchdyn.core", core)
    _check_against_closed_form("torchdyn", adjoint=False)
    field = _linear_field(2, seed=5)
    with pytest.raises(ValueError, match="adaptive solvers only"):
        make_peer("torchdyn", field, dim=2, step_size=0.1)


@pytest.mark.parametrize("peer", AVAILABLE)
def test_peers_refuse_unknown_options_and_traces(peer: str) -> None:
    field = _linear_field(2, seed=7)
    with pytest.raises(TypeError, match="tolerance"):
        make_peer(peer, field, dim=2, tolerance=1e-3)
    with pytest.raises(ValueError, match="trace must be 'exact' or 'hutchinson'"):
        make_peer(peer, field, dim=2, trace="hutch")


@pytest.mark.skipif("zuko" not in AVAILABLE, reason="zuko is not installed")
def test_zuko_peer_refuses_what_zuko_cannot_run() -> None:
    field = _linear_field(2, seed=8)
    with pytest.raises(ValueError, match="adaptive dopri5"):
        make_peer("zuko", field, dim=2, method="rk4")
    with pytest.raises(ValueError, match="adaptive dopri5"):
        make_peer("zuko", field, dim=2, step_size=0.1)
