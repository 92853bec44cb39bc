"""Rectified flow: reflow pairs are exactly (z, sampler(z)) with the context carried along."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import flowkit
from flowkit.errors import PluginContractError
from flowkit.matching import flow_matching_loss, rectified_flow_loss, reflow_pairs


def test_pairs_are_the_noise_and_its_image() -> None:
    z = torch.randn(9, 3, generator=torch.Generator().manual_seed(1))
    sampler = nn.Linear(3, 3)
    pairs = reflow_pairs(sampler, z)
    assert torch.equal(pairs.z, z)
    assert torch.equal(pairs.x, sampler(z).detach())
    assert pairs.context is None
    assert not pairs.x.requires_grad


def test_context_is_passed_to_the_sampler_and_carried_along_in_chunks() -> None:
    z = torch.randn(10, 2)
    context = torch.randn(10, 2)
    calls: list[int] = []

    def sampler(zc: torch.Tensor, *, context: torch.Tensor) -> torch.Tensor:
        calls.append(zc.shape[0])
        return zc * 3 + context

    pairs = reflow_pairs(sampler, z, context=context, batch_size=4)
    assert calls == [4, 4, 2]
    assert torch.equal(pairs.x, z * 3 + context)
    assert torch.equal(pairs.z, z) and pairs.context is context


@pytest.mark.parametrize("batch_size", [0, -1, 2.5, True])
def test_bad_batch_size_is_refused(batch_size: object) -> None:
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        reflow_pairs(lambda z: z, torch.zeros(3, 1), batch_size=batch_size)  # type: ignore[arg-type]


@pytest.mark.parametrize("sampler", [lambda z: z[:-1], lambda z: z.numpy(), lambda z: z.sum(-1)])
def test_sampler_with_wrong_output_is_a_contract_error(sampler: object) -> None:
    with pytest.raises(PluginContractError, match="the sampler must return a tensor"):
        reflow_pairs(sampler, torch.zeros(3, 2))  # type: ignore[arg-type]


def test_context_with_wrong_rows_is_refused() -> None:
    with pytest.raises(ValueError, match="one row per sample"):
        reflow_pairs(lambda z, context: z, torch.zeros(3, 2), context=torch.zeros(2, 1))


def test_rectified_flow_loss_vanishes_at_the_exact_velocity_of_linear_pairs() -> None:
    """For x = A z + b, x_t = M_t z + t b with M_t = (1 - t) I + t A, and the velocity
    of every pair's straight line is (A - I) M_t^{-1} (x_t - t b) + b."""
    g = torch.Generator().manual_seed(3)
    A = torch.eye(2) + 0.3 * torch.randn(2, 2, generator=g)
    b = torch.tensor([1.0, -2.0])
    pairs = reflow_pairs(lambda z: z @ A.T + b, torch.randn(64, 2, generator=g))

    def velocity(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        M = (1 - t) * torch.eye(2) + t * A
        z = torch.linalg.solve(M, (x - t * b).T).T
        return z @ (A - torch.eye(2)).T + b

    losses = rectified_flow_loss(velocity, pairs, generator=g, reduction="none")
    assert losses.shape == (64,)
    assert losses.max() < 1e-20
    # and a field that is not the pairs' velocity has a positive loss
    assert rectified_flow_loss(lambda t, x: x - x, pairs, generator=g) > 0.1


def test_rectified_flow_loss_is_flow_matching_on_the_fixed_pairs() -> None:
    g = torch.Generator().manual_seed(0)
    pairs = reflow_pairs(
        lambda z, context: z.flip(0) + context,
        torch.randn(8, 2, generator=g),
        context=torch.randn(8, 2, generator=g),
    )
    t = torch.rand(8, generator=g)

    def field(t: torch.Tensor, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        return torch.sin(x) * t + context

    expected = flow_matching_loss(
        field, pairs.z, pairs.x, coupling="independent", context=pairs.context, t=t
    )
    assert torch.equal(rectified_flow_loss(field, pairs, t=t), expected)


def test_pairs_from_a_flowkit_cnf_sampler_are_its_transform() -> None:
    torch.manual_seed(0)
    model = flowkit.CNF(
        "mlp",
        "rk4",
        "exact",
        "backprop",
        dim=2,
        field_options={"hidden": (8,)},
        integrator_options={"n_steps": 4},
    )
    z = torch.randn(6, 2)
    pairs = reflow_pairs(model.transform, z, batch_size=4)
    with torch.no_grad():
        assert torch.equal(pairs.x[:4], model.transform(z[:4]))
        assert torch.equal(pairs.x[4:], model.transform(z[4:]))
    torch.testing.assert_close(pairs.x, model.transform(z).detach(), rtol=1e-12, atol=1e-12)
