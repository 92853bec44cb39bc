"""The reverse-time SDE with the exact score brings the end-time marginal back to the data,
for every noising SDE and every registered SDE integrator (float64, fixed seeds).

Data ``N(mu, Sigma)`` in two dimensions: the score of every marginal is exact
(:class:`flowkit.sde.GaussianScore`). Samples of the exact marginal at ``s = T`` are run
through ``dx = (f - g^2 score) ds + g dw`` from ``s = T`` down to ``s = 0`` (``start_time
= 0``: the data's own covariance keeps the score finite there), and the sample mean and
covariance must match ``mu`` and ``Sigma`` within 4 standard errors (``Sigma_ii / N`` for
a mean, ``(Sigma_ii Sigma_jj + Sigma_ij^2) / N`` for a covariance entry).

Sample size and steps: N = 4000 and 250 equal steps. The drift is linear and the start
Gaussian, so Euler-Maruyama's mean and covariance follow an exact recursion; at 250
steps its bias is below 0.3 standard errors for every SDE (checked below; VP's and
sub-VP's stiff end, ``beta = 20``, sets the count: weak order 1, bias proportional to the
step), so a bias the statistics could see would be the method's, not the step's. The
other methods are of weak order at least 1 and no less accurate here.
"""

from __future__ import annotations

import pytest
import torch
from registry_helpers import suite_registry
from torch import Tensor

from flowkit.interfaces import SDE
from flowkit.sde import GaussianScore

SDE_INTEGRATORS = suite_registry().names("sde_integrator")
SDES = ("vp", "subvp", "ve")
MEAN = torch.tensor([0.5, -1.0], dtype=torch.float64)
COVARIANCE = torch.tensor([[1.0, 0.3], [0.3, 0.5]], dtype=torch.float64)
SAMPLES, STEPS = 4000, 250
BIAS_BUDGET = 0.3
"""Euler-Maruyama's bias at STEPS, in standard errors, that the sample size allows."""


def _noising(name: str) -> SDE:
    return suite_registry().create("sde", name, start_time=0.0)  # type: ignore[no-any-return]


def _standard_errors() -> tuple[Tensor, Tensor]:
    variances = COVARIANCE.diagonal()
    mean_se = (variances / SAMPLES).sqrt()
    cov_se = ((variances[:, None] * variances[None, :] + COVARIANCE**2) / SAMPLES).sqrt()
    return mean_se, cov_se


def _reverse_samples(name: str, sde: SDE, steps: int) -> Tensor:
    """Exact end-time marginal samples run back to ``s = 0`` with the exact score."""
    score = GaussianScore(MEAN, COVARIANCE, sde)
    end = torch.tensor(sde.end_time, dtype=torch.float64)
    loc, cov = score.marginal_covariance(end)
    generator = torch.Generator().manual_seed(2024)
    noise = torch.randn(SAMPLES, 2, generator=generator, dtype=torch.float64)
    start = loc + noise @ torch.linalg.cholesky(cov).T

    def drift(s: Tensor, x: Tensor) -> Tensor:
        return sde.reverse_drift(x, s, score.score(x, s))

    def diffusion(s: Tensor, x: Tensor) -> Tensor:
        return sde.diffusion(s)

    integrator = suite_registry().create("sde_integrator", name, n_steps=steps)
    times = torch.tensor([sde.end_time, 0.0], dtype=torch.float64)
    return integrator.integrate(drift, diffusion, start, times, generator=generator).ys[-1]  # type: ignore[no-any-return]


@pytest.mark.parametrize("sde_name", SDES)
@pytest.mark.parametrize("name", SDE_INTEGRATORS)
def test_reverse_sde_with_the_exact_score_recovers_the_data(name: str, sde_name: str) -> None:
    samples = _reverse_samples(name, _noising(sde_name), STEPS)
    mean_se, cov_se = _standard_errors()
    mean_error = (samples.mean(0) - MEAN).abs() / mean_se
    cov_error = (torch.cov(samples.T) - COVARIANCE).abs() / cov_se
    assert float(mean_error.max()) < 4, f"mean off by {mean_error.tolist()} standard errors"
    assert float(cov_error.max()) < 4, f"covariance off by {cov_error.tolist()} standard errors"


def _euler_maruyama_moments(sde: SDE, steps: int) -> tuple[Tensor, Tensor]:
    """Mean and covariance of Euler-Maruyama's reverse-time samples, exactly.

    With the exact score, ``x <- x - h (a x + g^2 P^{-1} (x - alpha mu)) + g sqrt(h) z``
    (``f = a x``, ``P = alpha^2 Sigma + sigma^2 I``) is affine in ``x`` and ``z``, so
    the moments follow ``m <- A m + b``, ``C <- A C A^T + g^2 h I``.
    """
    score = GaussianScore(MEAN, COVARIANCE, sde)
    eye = torch.eye(2, dtype=torch.float64)
    h = sde.end_time / steps
    mean, cov = score.marginal_covariance(torch.tensor(sde.end_time, dtype=torch.float64))
    for k in range(steps):
        s = torch.tensor(sde.end_time - k * h, dtype=torch.float64)
        centre, marginal = score.marginal_covariance(s)
        rate = float(sde.drift(torch.ones(1, 1, dtype=torch.float64), s))
        g2 = float(sde.diffusion(s)) ** 2
        precision = torch.linalg.inv(marginal)
        step = eye - h * (rate * eye + g2 * precision)
        mean = step @ mean + h * g2 * precision @ centre
        cov = step @ cov @ step.T + g2 * h * eye
    return mean, cov


@pytest.mark.parametrize("sde_name", SDES)
def test_the_step_count_keeps_euler_maruyama_bias_below_the_statistical_error(
    sde_name: str,
) -> None:
    mean, cov = _euler_maruyama_moments(_noising(sde_name), STEPS)
    mean_se, cov_se = _standard_errors()
    mean_bias = float(((mean - MEAN).abs() / mean_se).max())
    cov_bias = float(((cov - COVARIANCE).abs() / cov_se).max())
    assert max(mean_bias, cov_bias) < BIAS_BUDGET


def test_too_few_steps_are_caught_and_the_recursion_predicts_the_bias() -> None:
    """At 10 steps on VP, Euler-Maruyama's samples miss the data's mean by more than 4
    standard errors (the statistical test can fail), and land where the exact moment
    recursion says, within 4 standard errors (the recursion is the sampler's)."""
    sde = _noising("vp")
    samples = _reverse_samples("euler_maruyama", sde, 10)
    predicted, predicted_cov = _euler_maruyama_moments(sde, 10)
    sample_mean = samples.mean(0)
    mean_se = (predicted_cov.diagonal() / SAMPLES).sqrt()
    assert float(((sample_mean - MEAN).abs() / mean_se).max()) > 4
    assert float(((sample_mean - predicted).abs() / mean_se).max()) < 4
