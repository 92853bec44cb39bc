"""The flow-matching loss: paths, per-sample time, context alignment and error paths."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from flowkit import get_registry
from flowkit.errors import PluginContractError
from flowkit.matching import evaluate_field, flow_matching_loss, ot_assignment, straight_path

REGISTRY = get_registry()
FIELD_NAMES = [spec.name for spec in REGISTRY.specs("vector_field")]


def test_straight_path_points_and_velocity() -> None:
    g = torch.Generator().manual_seed(0)
    x0, x1, eps = (torch.randn(5, 3, generator=g) for _ in range(3))
    t = torch.rand(5, generator=g)
    xt, ut = straight_path(x0, x1, t, sigma=0.2, noise=eps)
    tc = t[:, None]
    torch.testing.assert_close(xt, (1 - tc) * x0 + tc * x1 + 0.2 * eps, rtol=0, atol=1e-15)
    assert torch.equal(ut, x1 - x0)
    # the ends of the deterministic path are the samples themselves
    assert torch.equal(straight_path(x0, x1, torch.zeros(5))[0], x0)
    assert torch.equal(straight_path(x0, x1, torch.ones(5))[0], x1)


def test_straight_path_refuses_bad_times_and_noise() -> None:
    x = torch.zeros(4, 2)
    with pytest.raises(ValueError, match=r"one time per sample, shape \(4,\)"):
        straight_path(x, x, torch.zeros(3))
    with pytest.raises(ValueError, match="noise must have the samples' shape"):
        straight_path(x, x, torch.zeros(4), sigma=1.0, noise=torch.zeros(4, 3))


@pytest.mark.parametrize("name", FIELD_NAMES)
def test_evaluate_field_gives_each_row_its_own_time(name: str) -> None:
    """Every registered field, scalar-t by contract, is evaluated row-wise through vmap."""
    torch.manual_seed(0)
    field = REGISTRY.create("vector_field", name, dim=3)
    x = torch.randn(6, 3)
    t = torch.rand(6)
    out = evaluate_field(field, t, x)
    rows = torch.cat([field(t[i], x[i : i + 1]) for i in range(6)])
    torch.testing.assert_close(out, rows, rtol=1e-12, atol=1e-12)
    # gradients reach the parameters exactly as in the row-by-row evaluation
    grads = torch.autograd.grad(out.pow(2).sum(), list(field.parameters()))
    expected = torch.autograd.grad(rows.pow(2).sum(), list(field.parameters()))
    for a, b in zip(grads, expected, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_a_field_declaring_per_sample_time_is_called_once_with_all_times() -> None:
    class PerSample(nn.Module):
        per_sample_time = True

        def __init__(self) -> None:
            super().__init__()
            self.seen: list[tuple[int, ...]] = []

        def forward(self, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
            self.seen.append(tuple(t.shape))
            return t[:, None] * x

    field = PerSample()
    out = evaluate_field(field, torch.tensor([1.0, 2.0, 3.0]), torch.ones(3, 2))
    assert field.seen == [(3,)]
    assert out[:, 0].tolist() == [1.0, 2.0, 3.0]


def test_a_field_that_cannot_be_vectorised_says_how_to_fix_it() -> None:
    def scalar_only(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return x * t.item()

    with pytest.raises(PluginContractError, match="per_sample_time = True"):
        evaluate_field(scalar_only, torch.zeros(2), torch.zeros(2, 1))


def test_a_field_returning_the_wrong_shape_is_a_contract_error() -> None:
    with pytest.raises(PluginContractError):
        evaluate_field(lambda t, x: x.sum(-1), torch.zeros(2), torch.zeros(2, 3))


def test_loss_is_the_mean_squared_velocity_error_with_documented_draw_order() -> None:
    """t is drawn first, then eps, from the generator; the loss sums over dimensions."""
    g = torch.Generator().manual_seed(7)
    x0, x1 = torch.randn(8, 2, generator=g), torch.randn(8, 2, generator=g)

    def field(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x) * (1 + t)

    loss = flow_matching_loss(field, x0, x1, sigma=0.3, generator=torch.Generator().manual_seed(11))
    replay = torch.Generator().manual_seed(11)
    t = torch.rand(8, generator=replay)
    eps = torch.randn(8, 2, generator=replay)
    expected = torch.stack(
        [
            (field(t[i], (1 - t[i]) * x0[i] + t[i] * x1[i] + 0.3 * eps[i]) - (x1[i] - x0[i]))
            .pow(2)
            .sum()
            for i in range(8)
        ]
    ).mean()
    torch.testing.assert_close(loss, expected, rtol=1e-12, atol=0)


def test_reductions_agree() -> None:
    g = torch.Generator().manual_seed(0)
    x0, x1, t = torch.randn(5, 2, generator=g), torch.randn(5, 2, generator=g), torch.rand(5)
    field = lambda t, x: 2 * x  # noqa: E731
    per = flow_matching_loss(field, x0, x1, t=t, reduction="none")
    assert per.shape == (5,)
    torch.testing.assert_close(flow_matching_loss(field, x0, x1, t=t), per.mean())
    torch.testing.assert_close(flow_matching_loss(field, x0, x1, t=t, reduction="sum"), per.sum())


def test_ot_coupling_keeps_context_aligned_with_its_data_sample() -> None:
    """With context = x1, the field (context - x) / (1 - t) is exactly x1 - x0 on the
    path of (x0, x1); the loss vanishes only if the context moved with x1."""
    x0 = torch.tensor([[0.0, 0.0], [5.0, 0.0], [0.0, 5.0], [5.0, 5.0]])
    x1 = x0.flip(0) + 0.1  # the given order is far from the OT pairing
    t = torch.full((4,), 0.4)

    def field(t: torch.Tensor, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        return (context - x) / (1 - t)

    for coupling in ("independent", "ot"):
        per = flow_matching_loss(
            field, x0, x1, coupling=coupling, context=x1, t=t, reduction="none"
        )
        assert per.max() < 1e-24, coupling
    # a context left in the given order while x1 is reordered breaks the pairing
    perm = ot_assignment(x0, x1)
    assert perm.tolist() != [0, 1, 2, 3]
    stale = flow_matching_loss(field, x0, x1[perm], context=x1, t=t)
    assert stale > 1.0


def test_ot_coupling_lowers_the_loss_of_the_straight_field_it_implies() -> None:
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(32, 2, generator=g)
    x1 = x0 + torch.tensor([4.0, 0.0])  # the identity pairing is optimal; shuffle it
    x1 = x1[torch.randperm(32, generator=g)]
    shift = lambda t, x: torch.tensor([4.0, 0.0]).expand_as(x)  # noqa: E731
    assert flow_matching_loss(shift, x0, x1, coupling="ot", generator=g) < 1e-24
    assert flow_matching_loss(shift, x0, x1, coupling="independent", generator=g) > 0.5


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"coupling": "exact"}, ValueError, "Unknown coupling 'exact'"),
        ({"reduction": "avg"}, ValueError, "Unknown reduction 'avg'.*mean, sum, none"),
        ({"sigma": -1.0}, ValueError, "must be finite and >= 0"),
        ({"sigma": float("inf")}, ValueError, "must be finite and >= 0"),
        ({"sigma": "0.1"}, TypeError, "sigma must be a real number"),
        ({"sigma": True}, TypeError, "sigma must be a real number"),
        ({"t": torch.zeros(3)}, ValueError, "one time per sample"),
    ],
)
def test_bad_options_are_refused(options: dict, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        flow_matching_loss(lambda t, x: x, torch.zeros(4, 2), torch.zeros(4, 2), **options)


def test_an_empty_batch_is_refused_instead_of_giving_nan() -> None:
    with pytest.raises(ValueError, match="at least one sample"):
        flow_matching_loss(lambda t, x: x, torch.zeros(0, 2), torch.zeros(0, 2))
