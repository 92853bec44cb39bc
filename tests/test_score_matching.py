"""The ``score_matching`` objective and its loss: minimised by the exact score, options, errors.

Gaussian data ``N(mu, C)`` have the exact score of every marginal in closed
form (:class:`flowkit.sde.GaussianScore`). A scalar ``theta`` scales it,
``score_theta = (1 + theta) * exact``: the denoising score matching loss has a
zero gradient in ``theta`` at ``theta = 0`` (statistically: within 4 standard
errors, fixed seed) and a significant one of the sign of ``theta`` away from
it, for every SDE, weighting and parametrisation. To get per-sample gradients
in one backward pass, ``theta`` holds one (equal) value per sample.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from flowkit.plugins.score_matching import ScoreMatching
from flowkit.plugins.sdes import VESDE, VPSDE, SubVPSDE
from torch import Tensor, nn

import flowkit
from flowkit.compat import check_compatibility
from flowkit.errors import IncompatibleComponentsError, InvalidInputError
from flowkit.registry import get_registry
from flowkit.sde import GaussianScore, NetworkScore, ScoreModel
from flowkit.sde.losses import denoising_score_matching_loss, diffusion_times
from flowkit.testing.objective_checks import check_objective

SDES = {
    "vp": lambda: VPSDE(),
    "subvp": lambda: SubVPSDE(),
    "ve": lambda: VESDE(sigma_max=5.0),
}
N = 20_000


def _gaussian(sde: Any) -> GaussianScore:
    g = torch.Generator().manual_seed(3)
    a = torch.randn(2, 2, generator=g, dtype=torch.float64)
    cov = a @ a.T + 0.3 * torch.eye(2, dtype=torch.float64)
    return GaussianScore(torch.tensor([0.7, -0.4], dtype=torch.float64), cov, sde)


def _data(exact: GaussianScore, n: int, seed: int) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    chol = torch.linalg.cholesky(exact.covariance)
    return exact.mean + torch.randn(n, 2, generator=g, dtype=torch.float64) @ chol.T


def _exact_score(exact: GaussianScore, x: Tensor, s: Tensor) -> Tensor:
    """The exact score at one time per row, batched (GaussianScore loops over rows)."""
    alpha, sigma = exact.sde.kernel(s)
    eye = torch.eye(x.shape[1], dtype=x.dtype)
    cov = alpha[:, None, None] ** 2 * exact.covariance + sigma[:, None, None] ** 2 * eye
    centred = x - alpha[:, None] * exact.mean
    return -torch.linalg.solve(cov, centred.unsqueeze(-1)).squeeze(-1)


class ScaledScore(ScoreModel):
    """``(1 + theta_b) * exact`` on row ``b``: the score parametrisation."""

    def __init__(self, exact: GaussianScore, n: int) -> None:
        super().__init__(exact.sde, exact.dim)
        self.exact = exact
        self.theta = nn.Parameter(torch.zeros(n, dtype=torch.float64))

    def score(self, x: Tensor, s: Tensor, context: Tensor | None = None) -> Tensor:
        return (1 + self.theta[:, None]) * _exact_score(self.exact, x, s)


class ScaledNoise(nn.Module):
    """A noise-predicting 'network' in flow time: ``-(1 + theta_b) sigma(s) exact``."""

    per_sample_time = True

    def __init__(self, exact: GaussianScore, n: int) -> None:
        super().__init__()
        self.exact = exact
        self.theta = nn.Parameter(torch.zeros(n, dtype=torch.float64))

    def forward(self, t: Tensor, x: Tensor) -> Tensor:
        s = self.exact.clock.diffusion_time(t)
        _, sigma = self.exact.sde.kernel(s)
        return -(1 + self.theta[:, None]) * sigma[:, None] * _exact_score(self.exact, x, s)


def _scaled_model(exact: GaussianScore, parametrisation: str) -> tuple[ScoreModel, nn.Parameter]:
    if parametrisation == "score":
        model = ScaledScore(exact, N)
        return model, model.theta
    network = ScaledNoise(exact, N)
    return NetworkScore(network, exact.sde, 2, parametrisation="noise"), network.theta


def test_the_batched_exact_score_is_gaussian_scores() -> None:
    exact = _gaussian(VPSDE())
    x, s = _data(exact, 4, 0), torch.tensor([1e-3, 0.2, 0.5, 1.0], dtype=torch.float64)
    assert torch.allclose(_exact_score(exact, x, s), exact.score(x, s), rtol=1e-12)


@pytest.mark.parametrize("parametrisation", ["score", "noise"])
@pytest.mark.parametrize("weighting", ["sigma2", "likelihood", "likelihood-is"])
@pytest.mark.parametrize("sde_name", list(SDES))
def test_the_exact_score_minimises_the_loss(
    sde_name: str, weighting: str, parametrisation: str
) -> None:
    exact = _gaussian(SDES[sde_name]())
    model, theta = _scaled_model(exact, parametrisation)
    x0 = _data(exact, N, seed=11)
    options = {
        "weighting": weighting.removesuffix("-is"),
        "importance_sampling": weighting.endswith("-is"),
    }
    for value, sign in ((0.0, 0), (0.3, 1), (-0.3, -1)):
        with torch.no_grad():
            theta.fill_(value)
        loss = denoising_score_matching_loss(
            model, x0, generator=torch.Generator().manual_seed(5), **options
        )
        (grad,) = torch.autograd.grad(loss, theta)
        per_sample = N * grad  # the loss is the batch mean
        mean, stderr = per_sample.mean(), per_sample.std() / N**0.5
        if sign == 0:
            assert abs(mean) < 4 * stderr, (float(mean), float(stderr))
        else:
            assert sign * mean > 4 * stderr, (value, float(mean), float(stderr))


@pytest.mark.parametrize("sde_name", list(SDES))
def test_the_minimum_is_the_posterior_variance_of_the_noise(sde_name: str) -> None:
    """At the exact score, E||sigma score + z||^2 = E_s tr(I - sigma^2 C_s^{-1})."""
    sde = SDES[sde_name]()
    exact = _gaussian(sde)
    grid = torch.linspace(sde.start_time, sde.end_time, 20_001, dtype=torch.float64)
    alpha, sigma = sde.kernel(grid)
    eye = torch.eye(2, dtype=torch.float64)
    cov = alpha[:, None, None] ** 2 * exact.covariance + sigma[:, None, None] ** 2 * eye
    trace = (eye - sigma[:, None, None] ** 2 * torch.linalg.inv(cov)).diagonal(0, 1, 2).sum(-1)
    expected = torch.trapezoid(trace, grid) / (sde.end_time - sde.start_time)
    model = ScaledScore(exact, 500)
    losses = torch.stack(
        [
            denoising_score_matching_loss(
                model, _data(exact, 500, seed), generator=torch.Generator().manual_seed(seed)
            ).detach()
            for seed in range(100)
        ]
    )
    stderr = losses.std() / len(losses) ** 0.5
    assert abs(losses.mean() - expected) < 4 * stderr, (float(losses.mean()), float(expected))


def test_importance_sampling_keeps_the_likelihood_loss_and_cuts_its_variance() -> None:
    exact = _gaussian(VPSDE())
    model = ScaledScore(exact, 500)
    with torch.no_grad():
        model.theta.fill_(0.3)

    def batch_losses(importance_sampling: bool) -> Tensor:
        return torch.stack(
            [
                denoising_score_matching_loss(
                    model,
                    _data(exact, 500, seed),
                    weighting="likelihood",
                    importance_sampling=importance_sampling,
                    generator=torch.Generator().manual_seed(seed),
                ).detach()
                for seed in range(100)
            ]
        )

    plain, weighted = batch_losses(False), batch_losses(True)
    stderr = (plain.var() / len(plain) + weighted.var() / len(weighted)) ** 0.5
    assert abs(plain.mean() - weighted.mean()) < 4 * stderr
    assert weighted.var() < plain.var() / 4


def test_importance_sampled_times_have_the_density_they_report() -> None:
    sde = VPSDE()
    s, q = diffusion_times(
        sde, 100_000, importance_sampling=True, generator=torch.Generator().manual_seed(0)
    )
    assert bool(((s >= sde.start_time) & (s <= sde.end_time)).all())
    # The density is g^2 / sigma^2 normalised: for VP its integral is log(e^B - 1).
    big_b = lambda u: sde.beta_min * u + 0.5 * (sde.beta_max - sde.beta_min) * u**2  # noqa: E731
    total = torch.log(torch.expm1(torch.tensor(big_b(1.0)))) - torch.log(
        torch.expm1(torch.tensor(big_b(sde.start_time), dtype=torch.float64))
    )
    _, sigma = sde.kernel(s)
    exact_q = sde.diffusion(s) ** 2 / sigma**2 / total
    assert torch.allclose(q, exact_q, rtol=1e-2)
    # P(s <= 0.01) from the closed-form CDF.
    cdf = (
        torch.log(torch.expm1(torch.tensor(big_b(0.01), dtype=torch.float64)))
        - torch.log(torch.expm1(torch.tensor(big_b(sde.start_time), dtype=torch.float64)))
    ) / total
    frequency = (s <= 0.01).double().mean()
    assert abs(frequency - cdf) < 4 * (cdf * (1 - cdf) / len(s)) ** 0.5


def test_sigma2_weighting_is_the_noise_prediction_loss() -> None:
    torch.manual_seed(0)
    network = get_registry().create("vector_field", "mlp", dim=2, hidden=(8,)).double()
    sde = VPSDE()
    x0 = torch.randn(64, 2, dtype=torch.float64)
    for parametrisation in ("noise", "score"):
        for weighting in ("sigma2", "likelihood"):
            model = NetworkScore(network, sde, 2, parametrisation=parametrisation)
            loss = denoising_score_matching_loss(
                model, x0, weighting=weighting, generator=torch.Generator().manual_seed(1)
            )
            g = torch.Generator().manual_seed(1)  # the same draws: times, then noise
            s, _ = diffusion_times(sde, 64, generator=g)
            z = torch.randn(64, 2, generator=g, dtype=torch.float64)
            alpha, sigma = sde.kernel(s)
            xs = alpha[:, None] * x0 + sigma[:, None] * z
            out = torch.stack(
                [
                    network(model.clock.flow_time(si), xi[None])[0]
                    for si, xi in zip(s, xs, strict=True)
                ]
            )
            if parametrisation == "noise":
                error = (out - z).pow(2).sum(-1)  # Ho et al.'s ||eps_hat - z||^2
            else:
                error = (sigma[:, None] * out + z).pow(2).sum(-1)
            if weighting == "likelihood":
                error = error * sde.diffusion(s) ** 2 / sigma**2
            assert torch.allclose(loss, error.mean(), rtol=1e-10)
            mean_loss = denoising_score_matching_loss(
                model,
                x0,
                weighting=weighting,
                reduction="mean",
                generator=torch.Generator().manual_seed(1),
            )
            assert torch.allclose(mean_loss, loss / 2, rtol=1e-12)


# -- the objective ---------------------------------------------------------------------------


def _pf_model(**field_options: Any) -> flowkit.CNF:
    torch.manual_seed(0)
    options = {"score_field_options": {"hidden": [16, 16]}, **field_options}
    return flowkit.CNF(
        "probability_flow",
        "rk4",
        "exact",
        "backprop",
        dim=2,
        field_options=options,
        integrator_options={"n_steps": 8},
    ).double()


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"weighting": "likelihood"},
        {"weighting": "likelihood", "importance_sampling": True, "reduction": "mean"},
    ],
)
@pytest.mark.parametrize("parametrisation", ["noise", "score"])
def test_score_matching_passes_check_objective(options: dict, parametrisation: str) -> None:
    model = _pf_model(parametrisation=parametrisation)
    objective = get_registry().create("objective", "score_matching", **options)
    done = check_objective(objective, model, torch.randn(32, 2, dtype=torch.float64))
    assert "gradients reach the field" in done
    conditional = _pf_model(parametrisation=parametrisation, context_dim=3)
    context = torch.randn(32, 3, dtype=torch.float64)
    assert "float metrics" in check_objective(
        objective, conditional, torch.randn(32, 2, dtype=torch.float64), context=context
    )


def test_score_matching_is_registered_with_its_capabilities() -> None:
    spec = get_registry().get("objective", "dsm")
    assert spec.name == "score_matching"
    assert spec.capabilities == {
        "simulation_free": True,
        "requires_trace": False,
        "accepts_context": True,
        "requires_score_model": True,
    }


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"weighting": "sigma"}, ValueError, r"Unknown weighting 'sigma'.*sigma2, likelihood"),
        ({"reduction": "none"}, ValueError, r"Unknown reduction 'none'.*sum, mean"),
        ({"importance_sampling": True}, ValueError, r"weighting='likelihood' only"),
        ({"importance_sampling": "yes"}, TypeError, r"must be True or False"),
        ({"weigthing": "likelihood"}, TypeError, r"Unknown option.*'weigthing'"),
    ],
)
def test_bad_options_raise(options: dict, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        get_registry().create("objective", "score_matching", **options)


def test_importance_sampling_needs_a_positive_start_time() -> None:
    exact = _gaussian(VPSDE(start_time=0.0))
    with pytest.raises(ValueError, match=r"start_time > 0"):
        denoising_score_matching_loss(
            exact, _data(exact, 8, 0), weighting="likelihood", importance_sampling=True
        )


def test_a_model_without_a_probability_flow_field_is_incompatible() -> None:
    registry = get_registry()
    model = flowkit.CNF("mlp", "rk4", "exact", "backprop", dim=2).double()
    with pytest.raises(IncompatibleComponentsError, match=r"--field probability_flow"):
        ScoreMatching().loss(model, torch.randn(8, 2, dtype=torch.float64))
    spec = registry.get("objective", "score_matching")
    assert not check_compatibility(objective=spec, field=registry.get("vector_field", "mlp"))
    assert check_compatibility(
        objective=spec, field=registry.get("vector_field", "probability_flow")
    )
    assert check_compatibility(objective=registry.get("objective", "fm"), field=model.field)


def test_context_errors() -> None:
    batch = torch.randn(8, 2, dtype=torch.float64)
    with pytest.raises(InvalidInputError, match=r"built unconditional"):
        ScoreMatching().loss(_pf_model(), batch, context=torch.zeros(8, 1, dtype=torch.float64))
    with pytest.raises(InvalidInputError, match=r"is conditional"):
        ScoreMatching().loss(_pf_model(context_dim=1), batch)


def test_a_model_span_other_than_the_fields_clock_is_refused() -> None:
    model = flowkit.CNF("probability_flow", "rk4", "exact", "backprop", dim=2, t1=2.0).double()
    with pytest.raises(InvalidInputError, match=r"t in \[0, 2\].*\[0, 1\]"):
        ScoreMatching().loss(model, torch.randn(8, 2, dtype=torch.float64))


def test_a_conditional_score_model_learns_the_conditional_scores() -> None:
    """Two classes with means +-2: after training, the loss with the right context is
    far below the loss with the contexts swapped."""
    model = _pf_model(context_dim=2)
    g = torch.Generator().manual_seed(0)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    objective = ScoreMatching()

    def draw(n: int) -> tuple[Tensor, Tensor]:
        labels = torch.randint(0, 2, (n,), generator=g)
        x = torch.randn(n, 2, generator=g, dtype=torch.float64) * 0.3
        x[:, 0] += 4.0 * labels - 2.0
        return x, nn.functional.one_hot(labels, 2).double()

    for _ in range(300):
        x, context = draw(128)
        optimizer.zero_grad()
        objective.loss(model, x, context=context, generator=g).loss.backward()
        optimizer.step()
    x, context = draw(4000)
    right = objective.loss(model, x, context=context, generator=torch.Generator().manual_seed(1))
    swapped = objective.loss(
        model, x, context=context.flip(1), generator=torch.Generator().manual_seed(1)
    )
    assert float(swapped.loss.detach()) > 2 * float(right.loss.detach())
