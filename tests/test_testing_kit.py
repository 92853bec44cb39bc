"""The public testing kit itself: strategies stay in bounds, the pairwise cover covers."""

from __future__ import annotations

import itertools

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from flowkit.compat import Compatibility
from flowkit.registry import Combination, ComponentSpec
from flowkit.testing import strategies as fst
from flowkit.testing.combinations import pairs_of, pairwise_cover
from flowkit.testing.order import (
    COST_RATIO,
    MIN_ERROR_EXPONENT,
    ToleranceResponse,
    max_cost_exponent,
    order_is_supported,
)
from flowkit.testing.tolerances import (
    STEP_ACCUMULATION,
    Tolerance,
    fixed_step_for,
    integrator_tolerance,
    statistical_bound,
    step_control_bound,
)


@given(st.data(), fst.dims())
def test_matrix_strategies_are_bounded(data: st.DataObject, dim: int) -> None:
    a = data.draw(fst.well_conditioned_matrices(dim))
    assert a.shape == (dim, dim) and a.dtype == torch.float64
    assert torch.linalg.matrix_norm(a, ord=2) <= 1.0 + 1e-12
    s = data.draw(fst.skew_symmetric_matrices(dim))
    assert torch.equal(s, -s.T)
    assert torch.linalg.matrix_norm(s, ord=2) <= 1.0 + 1e-12


@given(fst.time_spans(backward=True), fst.time_spans(backward=False), fst.time_spans())
def test_time_spans(backward, forward, either) -> None:
    assert backward[1] < backward[0]
    assert forward[1] > forward[0]
    for t0, t1 in (backward, forward, either):
        assert 0.25 <= abs(t1 - t0) <= 1.0 + 1e-12


def _spec(kind: str, name: str) -> ComponentSpec:
    return ComponentSpec(kind=kind, name=name, factory=object)


def test_pairwise_cover_covers_every_pair_with_fewer_combinations() -> None:
    kinds = {
        "vector_field": ["f1", "f2", "f3"],
        "integrator": ["i1", "i2", "i3", "i4"],
        "trace_estimator": ["t1", "t2", "t3"],
        "gradient_strategy": ["g1", "g2", "g3"],
    }
    combos = [
        Combination(
            _spec("vector_field", f),
            _spec("integrator", i),
            _spec("trace_estimator", t),
            _spec("gradient_strategy", g),
            Compatibility(True),
        )
        for f, i, t, g in itertools.product(*kinds.values())
        if not (i == "i4" and g == "g3")  # an incompatible pair never appears
    ]
    chosen = pairwise_cover(combos)
    everything = set().union(*(pairs_of(c) for c in combos))
    assert set().union(*(pairs_of(c) for c in chosen)) == everything
    assert len(chosen) < len(combos) / 4
    assert pairwise_cover(combos) == chosen  # deterministic


def test_tolerance_model() -> None:
    adaptive = integrator_tolerance(torch.float64, order=5, adaptive=True, rtol=1e-8, atol=1e-10)
    assert adaptive.atol == pytest.approx(100 * (1e-8 + 1e-10) + 1000 * 2.0**-52)
    h, n = fixed_step_for(4, 1e-6)
    assert n * h == pytest.approx(1.0)
    fixed = integrator_tolerance(torch.float64, order=4, adaptive=False, step_size=h)
    assert fixed.atol <= 1e-6 + 1e-12
    with pytest.raises(ValueError, match="rtol and atol"):
        integrator_tolerance(torch.float64, order=5, adaptive=True)
    with pytest.raises(ValueError, match="step_size"):
        integrator_tolerance(torch.float64, order=4, adaptive=False)
    assert statistical_bound(0.5) == 2.0
    tol = Tolerance(atol=1e-3, rtol=0.0)
    tol.assert_close(torch.tensor([1.0]), torch.tensor([1.0005]))
    with pytest.raises(AssertionError, match="velocity off its reference"):
        tol.assert_close(torch.tensor([1.0]), torch.tensor([1.01]), what="velocity")


def test_order_bands_separate_neighbouring_orders() -> None:
    """The cost band lies strictly between the declared order's exponent and the next
    lower order's; the fixed-step test accepts any slope nearer p than p - 1."""
    for p in range(2, 12):
        assert 1 / p < max_cost_exponent(p) < 1 / (p - 1)
    assert max_cost_exponent(1) > 1.0
    assert order_is_supported(8.8, 8) and order_is_supported(7.6, 8)
    assert not order_is_supported(7.4, 8)


def _response(evaluations: tuple[int, int], errors: tuple[float, float]) -> ToleranceResponse:
    return ToleranceResponse((1e-4, 1e-4 / COST_RATIO**5), evaluations, errors, 5, 1e-14)


def test_tolerance_response_verdicts() -> None:
    ratio = COST_RATIO**5
    honest = _response((100, 400), (1e-3, 1e-3 / ratio))
    assert honest.error_exponent == pytest.approx(1.0)
    assert honest.cost_exponent == pytest.approx(1 / 5)
    assert honest.error_follows_tolerance and honest.cost_follows_order
    stuck = _response((2000, 2000), (6e-3, 6e-3))  # fixed steps declared adaptive
    assert stuck.error_exponent == 0.0 and not stuck.error_follows_tolerance
    fourth_order = _response((100, round(100 * ratio**0.25)), (1e-3, 1e-3 / ratio))
    assert fourth_order.error_follows_tolerance and not fourth_order.cost_follows_order
    half = _response((100, 400), (1e-3, 1e-3 / ratio**MIN_ERROR_EXPONENT))
    assert half.error_follows_tolerance
    at_roundoff = _response((100, 400), (1e-13, 1e-15))  # nothing left to fall
    assert at_roundoff.error_follows_tolerance
    assert "declared order 5" in stuck.describe()


def test_step_control_bound() -> None:
    bound = step_control_bound(rtol=1e-6, atol=1e-7, n_steps=10, n_components=4)
    assert bound == pytest.approx(STEP_ACCUMULATION * 10 * 2 * 1.1e-6)
