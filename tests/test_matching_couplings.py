"""Couplings of flow matching: the minibatch-OT assignment is optimal, context follows x1."""

from __future__ import annotations

import itertools

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from flowkit.matching import COUPLINGS, couple, ot_assignment


def _cost(x0: torch.Tensor, x1: torch.Tensor, perm: list[int] | torch.Tensor) -> float:
    return float((x0 - x1[torch.as_tensor(perm)]).pow(2).sum())


@st.composite
def batches(draw: st.DrawFn, max_batch: int = 7) -> tuple[torch.Tensor, torch.Tensor]:
    n = draw(st.integers(1, max_batch))
    d = draw(st.integers(1, 3))
    values = st.floats(-5, 5, allow_nan=False, allow_infinity=False)
    x0 = draw(st.lists(values, min_size=n * d, max_size=n * d))
    x1 = draw(st.lists(values, min_size=n * d, max_size=n * d))
    return (
        torch.tensor(x0, dtype=torch.float64).reshape(n, d),
        torch.tensor(x1, dtype=torch.float64).reshape(n, d),
    )


@given(batches())
def test_ot_assignment_is_a_permutation_of_minimal_cost(pair: tuple) -> None:
    x0, x1 = pair
    perm = ot_assignment(x0, x1)
    assert perm.dtype == torch.long
    assert sorted(perm.tolist()) == list(range(x0.shape[0]))
    best = min(_cost(x0, x1, list(p)) for p in itertools.permutations(range(x0.shape[0])))
    assert _cost(x0, x1, perm) <= best + 1e-9 * (1 + best)


@given(batches())
def test_ot_coupling_reorders_x1_and_context_together(pair: tuple) -> None:
    x0, x1 = pair
    context = torch.arange(x1.shape[0] * 2, dtype=torch.float64).reshape(-1, 2)
    coupled = couple(x0, x1, "ot", context=context)
    perm = ot_assignment(x0, x1)
    assert coupled.x0 is x0
    assert torch.equal(coupled.x1, x1[perm])
    assert torch.equal(coupled.context, context[perm])


def test_ot_coupling_pairs_nearest_points_and_beats_the_given_order() -> None:
    x0 = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    x1 = torch.tensor([[0.5, 10.0], [0.5, 0.0], [10.5, 0.0]])
    coupled = couple(x0, x1, "ot", context=torch.tensor([0, 1, 2]))
    assert torch.equal(coupled.x1, x1[[1, 2, 0]])
    assert coupled.context.tolist() == [1, 2, 0]


def test_independent_coupling_keeps_the_rows_as_given() -> None:
    x0, x1, ctx = torch.randn(5, 2), torch.randn(5, 2), torch.randn(5, 3)
    coupled = couple(x0, x1, "independent", context=ctx)
    assert coupled.x0 is x0 and coupled.x1 is x1 and coupled.context is ctx
    assert couple(x0, x1).context is None


def test_unknown_coupling_lists_the_valid_ones() -> None:
    with pytest.raises(ValueError, match=r"Unknown coupling 'sinkhorn'.*independent, ot"):
        couple(torch.zeros(2, 1), torch.zeros(2, 1), "sinkhorn")
    assert COUPLINGS == ("independent", "ot")


@pytest.mark.parametrize(
    ("x0", "x1", "context", "error", "message"),
    [
        (torch.zeros(3, 2), torch.zeros(4, 2), None, ValueError, "same shape"),
        (torch.zeros(3), torch.zeros(3), None, ValueError, r"shape \(batch, dim\)"),
        ([[0.0]], torch.zeros(1, 1), None, TypeError, "x0 must be a torch.Tensor"),
        (torch.zeros(3, 2), torch.zeros(3, 2), torch.zeros(2, 1), ValueError, "one row per"),
        (torch.zeros(3, 2), torch.zeros(3, 2), [1, 2, 3], TypeError, "context must be"),
    ],
)
@pytest.mark.parametrize("coupling", COUPLINGS)
def test_bad_batches_are_refused(
    coupling: str, x0: object, x1: object, context: object, error: type, message: str
) -> None:
    with pytest.raises(error, match=message):
        couple(x0, x1, coupling, context=context)  # type: ignore[arg-type]


def test_ot_refuses_non_finite_samples() -> None:
    x1 = torch.tensor([[0.0], [float("nan")]])
    with pytest.raises(ValueError, match="finite"):
        ot_assignment(torch.zeros(2, 1), x1)


def test_ot_assignment_has_no_gradient_but_the_coupled_data_keeps_its_own() -> None:
    x0 = torch.randn(6, 2, requires_grad=True)
    x1 = torch.randn(6, 2, requires_grad=True)
    coupled = couple(x0, x1, "ot")
    coupled.x1.sum().backward()
    assert torch.equal(x1.grad, torch.ones_like(x1))
