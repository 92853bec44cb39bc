"""Tests of flowkit.metrics: closed forms, statistical bounds, invariances and errors."""

from __future__ import annotations

import math

import pytest
import torch

from flowkit.errors import InvalidInputError
from flowkit.metrics import energy_distance, sliced_wasserstein


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _folded_normal_mean(mu: float, sigma: float) -> float:
    """E|Z| for Z ~ N(mu, sigma^2)."""
    return sigma * math.sqrt(2 / math.pi) * math.exp(-(mu**2) / (2 * sigma**2)) + mu * (
        1 - 2 * 0.5 * math.erfc(mu / (sigma * math.sqrt(2)))
    )


def _energy_distance_normals(m: float) -> float:
    """D^2 between N(0, 1) and N(m, 1): X - Y ~ N(-m, 2), X - X' ~ N(0, 2)."""
    return 2 * _folded_normal_mean(m, math.sqrt(2)) - 2 * _folded_normal_mean(0.0, math.sqrt(2))


# -- energy distance ---------------------------------------------------------------------------
def test_energy_distance_v_statistic_is_zero_for_identical_samples() -> None:
    x = torch.randn(300, 3, generator=_gen(0), dtype=torch.float64)
    assert float(energy_distance(x, x)) == 0.0
    assert float(energy_distance(x, x.flip(0))) == pytest.approx(0.0, abs=1e-12)


def test_energy_distance_v_statistic_is_positive_for_different_samples() -> None:
    x = torch.randn(200, 2, generator=_gen(1), dtype=torch.float64)
    assert float(energy_distance(x, x + 0.5)) > 0.0


@pytest.mark.parametrize("m", [0.0, 0.5, 2.0])
def test_unbiased_energy_distance_matches_the_gaussian_closed_form(m: float) -> None:
    """The U-statistic's mean over replicates is within 4 standard errors of D^2."""
    g = _gen(2)
    values = []
    for _ in range(200):
        x = torch.randn(100, 1, generator=g, dtype=torch.float64)
        y = m + torch.randn(80, 1, generator=g, dtype=torch.float64)
        values.append(float(energy_distance(x, y, unbiased=True)))
    v = torch.tensor(values, dtype=torch.float64)
    se = float(v.std()) / math.sqrt(len(v))
    assert abs(float(v.mean()) - _energy_distance_normals(m)) < 4 * se


def test_v_statistic_carries_the_documented_bias() -> None:
    """V - U = E|X-X'| (1/n) + ... exactly: the V form averages the zero diagonal in."""
    g = _gen(3)
    x = torch.randn(50, 2, generator=g, dtype=torch.float64)
    y = torch.randn(40, 2, generator=g, dtype=torch.float64)
    xx = torch.cdist(x, x, compute_mode="donot_use_mm_for_euclid_dist").sum()
    yy = torch.cdist(y, y, compute_mode="donot_use_mm_for_euclid_dist").sum()
    expected = float(xx / (50 * 49) - xx / 50**2 + yy / (40 * 39) - yy / 40**2)
    v, u = energy_distance(x, y), energy_distance(x, y, unbiased=True)
    assert float(v - u) == pytest.approx(expected, rel=1e-12)


def test_energy_distance_of_one_distribution_is_near_zero_in_several_dimensions() -> None:
    """Two samples of N(0, I_5): U-statistics have mean 0 (within 4 standard errors)."""
    g = _gen(4)
    v = torch.tensor(
        [
            float(
                energy_distance(
                    torch.randn(60, 5, generator=g), torch.randn(60, 5, generator=g), unbiased=True
                )
            )
            for _ in range(150)
        ],
        dtype=torch.float64,
    )
    assert abs(float(v.mean())) < 4 * float(v.std()) / math.sqrt(len(v))


def test_energy_distance_blocks_do_not_change_the_value() -> None:
    g = _gen(5)
    x = torch.randn(37, 3, generator=g, dtype=torch.float64)
    y = torch.randn(23, 3, generator=g, dtype=torch.float64)
    whole = energy_distance(x, y, block=1000)
    assert float(energy_distance(x, y, block=4)) == pytest.approx(float(whole), rel=1e-12)


def test_energy_distance_is_symmetric_and_permutation_invariant() -> None:
    g = _gen(6)
    x = torch.randn(40, 2, generator=g, dtype=torch.float64)
    y = torch.randn(30, 2, generator=g, dtype=torch.float64) + 1.0
    d = float(energy_distance(x, y))
    px, py = torch.randperm(40, generator=g), torch.randperm(30, generator=g)
    assert float(energy_distance(x[px], y[py])) == pytest.approx(d, rel=1e-12)
    assert float(energy_distance(y, x)) == pytest.approx(d, rel=1e-12)


def test_energy_distance_keeps_the_dtype_float64_when_either_is() -> None:
    x = torch.randn(10, 2, generator=_gen(7), dtype=torch.float32)
    assert energy_distance(x, x.double() + 1).dtype == torch.float64
    assert energy_distance(x, x + 1).dtype == torch.float32


# -- sliced Wasserstein ------------------------------------------------------------------------
@pytest.mark.parametrize("shift", [-1.5, 0.0, 0.3, 4.0])
def test_sliced_w2_in_one_dimension_is_the_shift_for_shifted_samples(shift: float) -> None:
    """In 1-d the directions are +-1: SW2(x, x + m) = |m| exactly, for any sample."""
    x = torch.randn(500, 1, generator=_gen(8), dtype=torch.float64)
    value = float(sliced_wasserstein(x, x + shift, 16, _gen(9)))
    assert value == pytest.approx(abs(shift), abs=1e-12)


@pytest.mark.parametrize("m", [0.0, 0.5, 2.0])
def test_sliced_w2_between_two_gaussian_samples_is_near_the_shift(m: float) -> None:
    """N(0, 1) vs N(m, 1): W2 = |m|. By the triangle inequality the empirical value is off
    by at most W2(x_n, N(0,1)) + W2(y_n, N(m,1)), each of order sqrt(log log n / n) ~ 0.015
    at n = 10^4 (Bobkov & Ledoux 2019); the bound 0.06 is four times that."""
    g = _gen(10)
    x = torch.randn(10_000, 1, generator=g, dtype=torch.float64)
    y = m + torch.randn(10_000, 1, generator=g, dtype=torch.float64)
    assert abs(float(sliced_wasserstein(x, y, 4, g)) - m) < 0.06


def test_sliced_w2_of_a_translation_matches_the_projection_average() -> None:
    """SW2(x, x + v)^2 = mean_k (theta_k . v)^2; over uniform directions its mean is
    |v|^2 / d with variance |v|^4 2 (d - 1) / (d^2 (d + 2)): within 4 standard errors."""
    d, k = 4, 400
    x = torch.randn(50, d, generator=_gen(11), dtype=torch.float64)
    v = torch.tensor([1.0, -2.0, 0.5, 3.0], dtype=torch.float64)
    sw2 = float(sliced_wasserstein(x, x + v, k, _gen(12))) ** 2
    norm2 = float(v @ v)
    se = norm2 * math.sqrt(2 * (d - 1) / (d**2 * (d + 2))) / math.sqrt(k)
    assert abs(sw2 - norm2 / d) < 4 * se


def test_sliced_w2_with_unequal_sizes_is_the_exact_quantile_distance() -> None:
    """1-d: y repeats x twice (same empirical law), then SW2 = 0; and y = 2 copies of x + 1
    gives exactly 1."""
    x = torch.randn(7, 1, generator=_gen(13), dtype=torch.float64)
    y = torch.cat([x, x])
    assert float(sliced_wasserstein(x, y, 3, _gen(0))) == pytest.approx(0.0, abs=1e-12)
    assert float(sliced_wasserstein(x, y + 1, 3, _gen(0))) == pytest.approx(1.0, abs=1e-12)


def test_sliced_w2_unequal_sizes_two_points_against_hand_computation() -> None:
    """x = {0, 1} vs y = {0, 0.5, 3}: quantile steps on [0,1/3,1/2,2/3,1] give
    W2^2 = 1/3*0 + 1/6*0.25 + 1/6*0.25 + 1/3*4 = 1.41666..."""
    x = torch.tensor([[1.0], [0.0]], dtype=torch.float64)
    y = torch.tensor([[3.0], [0.0], [0.5]], dtype=torch.float64)
    expected = math.sqrt(0.25 / 6 + 0.25 / 6 + 4 / 3)
    assert float(sliced_wasserstein(x, y, 2, _gen(0))) == pytest.approx(expected, rel=1e-12)


def test_sliced_w2_is_permutation_invariant_and_reproducible() -> None:
    g = _gen(14)
    x = torch.randn(60, 3, generator=g, dtype=torch.float64)
    y = torch.randn(45, 3, generator=g, dtype=torch.float64) * 2
    d = float(sliced_wasserstein(x, y, 32, _gen(1)))
    perm = float(sliced_wasserstein(x[torch.randperm(60, generator=g)], y.flip(0), 32, _gen(1)))
    assert perm == pytest.approx(d, rel=1e-12)
    assert float(sliced_wasserstein(x, y, 32, _gen(1), block=5)) == pytest.approx(d, rel=1e-12)


def test_sliced_w2_is_zero_for_identical_samples_and_keeps_float64() -> None:
    x = torch.randn(30, 2, generator=_gen(15), dtype=torch.float64)
    out = sliced_wasserstein(x, x.flip(0), 8, _gen(2))
    assert out.dtype == torch.float64
    assert float(out) == pytest.approx(0.0, abs=1e-12)
    assert float(sliced_wasserstein(x, x, 8, _gen(2))) == 0.0


# -- errors ------------------------------------------------------------------------------------
@pytest.mark.parametrize("metric", [energy_distance, sliced_wasserstein])
def test_metrics_reject_different_dimensions(metric) -> None:
    with pytest.raises(InvalidInputError, match="same dimension, got 2 and 3"):
        metric(torch.zeros(4, 2), torch.zeros(4, 3))


@pytest.mark.parametrize("metric", [energy_distance, sliced_wasserstein])
def test_metrics_reject_empty_samples(metric) -> None:
    with pytest.raises(InvalidInputError, match="y is empty"):
        metric(torch.zeros(4, 2), torch.zeros(0, 2))


@pytest.mark.parametrize("metric", [energy_distance, sliced_wasserstein])
def test_metrics_reject_non_2d_non_finite_and_non_tensors(metric) -> None:
    with pytest.raises(InvalidInputError, match=r"shape \(n, dim\), got \(4,\)"):
        metric(torch.zeros(4), torch.zeros(4, 1))
    with pytest.raises(InvalidInputError, match="finite"):
        metric(torch.tensor([[float("nan")]]), torch.zeros(4, 1))
    with pytest.raises(TypeError, match=r"torch\.Tensor"):
        metric([[0.0]], torch.zeros(4, 1))


def test_unbiased_energy_distance_needs_two_rows() -> None:
    with pytest.raises(InvalidInputError, match="at least 2 rows"):
        energy_distance(torch.zeros(1, 2), torch.zeros(3, 2), unbiased=True)


@pytest.mark.parametrize("bad", [0, -3, 2.5, True])
def test_sliced_w2_rejects_bad_projection_counts_and_blocks(bad) -> None:
    x = torch.zeros(3, 2)
    with pytest.raises(ValueError, match="n_projections must be a positive integer"):
        sliced_wasserstein(x, x, bad)
    with pytest.raises(ValueError, match="block must be a positive integer"):
        sliced_wasserstein(x, x, 4, block=bad)
    with pytest.raises(ValueError, match="block must be a positive integer"):
        energy_distance(x, x, block=bad)
