"""The plain torchdiffeq reference: one implementation, no second-order graph it does not need."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest
import torch
from registry_helpers import suite_registry

from flowkit.bench.peers.torchdiffeq_plain import PlainCNF

TRAINING_BENCHMARK = Path(__file__).resolve().parents[1] / "benchmarks" / "training.py"


def _field() -> torch.nn.Module:
    torch.manual_seed(0)
    return suite_registry().create("vector_field", "mlp", dim=3, hidden=(16, 16))


def _load_training_benchmark() -> ModuleType:
    """The module of ``benchmarks/training.py`` that builds the compared models."""
    spec = importlib.util.spec_from_file_location("flowkit_benchmark_training", TRAINING_BENCHMARK)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[spec.name]
    return sys.modules[module.make_trainer.__module__]  # its sibling, training_setups.py


@pytest.mark.parametrize("trace", ["exact", "hutchinson"])
def test_divergence_has_no_graph_under_no_grad(trace: str) -> None:
    model = PlainCNF(_field(), dim=3, trace=trace)
    x = torch.randn(4, 3)
    model.aug.eps = torch.randn_like(x)
    state = (x, torch.zeros(4))
    with torch.no_grad():
        _, div = model.aug(torch.tensor(0.3), state)
    assert not div.requires_grad and div.grad_fn is None
    _, div = model.aug(torch.tensor(0.3), state)
    assert div.requires_grad  # with grad on, the divergence reaches the parameters
    (grad,) = torch.autograd.grad(div.sum(), model.field.net[0].weight)
    assert grad.abs().sum() > 0


def _peer() -> torch.nn.Module:
    return PlainCNF(_field(), dim=3, trace="exact", adjoint=True, rtol=1e-6, atol=1e-6)


def _benchmark_reference() -> torch.nn.Module:
    return _load_training_benchmark().plain_model(_field(), dim=3, t1=1.0)


@pytest.mark.parametrize("make", [_peer, _benchmark_reference], ids=["peer", "training.py"])
def test_adjoint_forward_solve_builds_no_second_order_graph(
    make: Callable[[], torch.nn.Module], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``odeint_adjoint`` solves forward without grad: the divergence keeps no graph there."""
    model = make()
    kept: list[bool] = []
    original = torch.autograd.grad

    def spy(*args: object, **kwargs: object) -> object:
        kept.append(bool(kwargs.get("create_graph")))
        return original(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(torch.autograd, "grad", spy)
    logp = model.log_prob(torch.randn(4, 3))
    forward = len(kept)
    assert forward > 0 and not any(kept)  # the forward solve: no double-backward graph
    (-logp.mean()).backward()
    assert any(kept[forward:])  # the backward solve needs it, for the parameters' gradient


def test_training_benchmark_uses_the_peer_as_its_plain_reference() -> None:
    training = _load_training_benchmark()
    field = _field()
    model = training.plain_model(field, dim=3, t1=0.5)
    assert type(model) is PlainCNF
    assert model.aug.trace == "exact" and model.adjoint and model.method == "dopri5"
    assert model.field is not field  # a copy: the two models train their own weights
    x = torch.randn(5, 3)
    reference = PlainCNF(field, dim=3, rtol=1e-5, atol=1e-5, adjoint=True, t1=0.5)
    with torch.no_grad():
        torch.testing.assert_close(model.log_prob(x), reference.log_prob(x))
    assert not any(
        isinstance(v, type) and issubclass(v, torch.nn.Module) and v.__module__ == training.__name__
        for v in vars(training).values()
    )  # no module of its own: nothing to drift from the peer
