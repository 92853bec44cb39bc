"""The example plugin holds itself to flowkit's public conformance kit."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runs without being installed

from flowkit_example_plugin import SSPRK3

import flowkit
from flowkit.testing.conformance import check_integrator


def test_ssprk3_passes_the_conformance_kit() -> None:
    torch.set_default_dtype(torch.float64)
    checked = check_integrator(SSPRK3, target=1e-6)
    assert "convergence order" in checked and "accuracy" in checked


def test_ssprk3_gets_adjoint_gradients_for_free() -> None:
    a = torch.tensor([[0.0, 1.0], [-1.0, -0.1]], dtype=torch.float64, requires_grad=True)
    y0 = torch.tensor([[1.0, 0.5]], dtype=torch.float64, requires_grad=True)
    t = torch.tensor([0.0, 1.0], dtype=torch.float64)

    def func(s, y):
        return y @ a.T

    grads = {}
    for strategy in ("adjoint", "backprop"):
        solution = flowkit.solve.solve(
            func, y0, t, integrator=SSPRK3(n_steps=200), gradient=strategy, params=[a]
        )
        grads[strategy] = torch.autograd.grad(solution.final.sum(), (y0, a))
    for adj, bp in zip(grads["adjoint"], grads["backprop"], strict=True):
        torch.testing.assert_close(adj, bp, atol=1e-6, rtol=1e-6)
