"""The samplers of a score model (:func:`flowkit.sde.sample`) against Gaussian data.

With Gaussian data ``N(mu, Sigma)`` the exact score of every marginal is known
(:class:`flowkit.sde.GaussianScore`), so each sampler, started from the exact
end-time marginal (the CNF's base), must return samples whose mean and
covariance match ``mu`` and ``Sigma`` within 4 standard errors (float64,
``start_time = 0``, fixed seeds).

Sample size and steps (bias below the statistical error): with ``n = 2000``
the standard error of a mean coordinate is ``sqrt(Sigma_ii / n)`` (0.016 for
the smaller variance) and that of a covariance entry
``sqrt((Sigma_ii Sigma_jj + Sigma_ij^2) / n)`` (3.2% of a variance). The
discretisation biases, measured once with 2e5 samples (``vp``, the worst of
the three SDEs): Euler-Maruyama's covariance error is 1.6% at 100 steps and
0.7% at 300, i.e. about ``1.6 / N``, so 0.8% (a quarter of a standard error)
at the 200 steps used here; predictor-corrector carries the unadjusted Langevin
bias of its corrector, ``~ 2 snr^2 / 2`` relative, 1.3-1.7% at snr 0.16 for
any ``N`` (half a standard error), and its mean bias is below 0.3 standard
errors at 100 steps. The probability flow ODE with dopri5 at 1e-8 has no
visible bias. So a correct sampler passes with a wide margin, while a wrong
factor in the drift, the diffusion or the step size moves a moment by many
standard errors.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

from flowkit import CNF
from flowkit.errors import IncompatibleComponentsError, InvalidInputError, UnknownComponentError
from flowkit.registry import get_registry
from flowkit.sde import GaussianScore, ProbabilityFlow, SamplerOptionError, sample

MU = torch.tensor([0.5, -1.0], dtype=torch.float64)
SIGMA = torch.tensor([[1.0, 0.3], [0.3, 0.5]], dtype=torch.float64)
N_SAMPLES = 2000
SDE_OPTIONS: dict[str, dict[str, Any]] = {"ve": {"sigma_max": 5.0}}
"""A ``sigma_max`` of the size of the data (Song et al.'s 50 suits images)."""

REGISTRY = get_registry()
SDES = REGISTRY.names("sde")
SDE_INTEGRATORS = REGISTRY.names("sde_integrator")


def gaussian_model(sde_name: str) -> CNF:
    """A CNF on the exact Gaussian score, based at the exact end-time marginal."""
    sde = REGISTRY.create("sde", sde_name, start_time=0.0, **SDE_OPTIONS.get(sde_name, {}))
    score = GaussianScore(MU, SIGMA, sde)
    base = score.marginal(torch.tensor(sde.end_time, dtype=torch.float64))
    return CNF(
        ProbabilityFlow(score),
        "dopri5",
        "exact",
        "backprop",
        dim=2,
        base=base,
        integrator_options={"rtol": 1e-8, "atol": 1e-8},
    )


def assert_gaussian_moments(x: torch.Tensor) -> None:
    """Mean and covariance of ``x`` within 4 standard errors of ``MU`` and ``SIGMA``."""
    n = x.shape[0]
    variances = SIGMA.diagonal()
    mean_error = (x.mean(0) - MU).abs() / (variances / n).sqrt()
    assert (mean_error < 4).all(), f"mean off by {mean_error.tolist()} standard errors"
    se_cov = ((variances[:, None] * variances[None, :] + SIGMA**2) / n).sqrt()
    cov_error = (torch.cov(x.T) - SIGMA).abs() / se_cov
    assert (cov_error < 4).all(), f"covariance off by {cov_error.tolist()} standard errors"


def seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("sde_integrator", SDE_INTEGRATORS)
@pytest.mark.parametrize("sde_name", SDES)
def test_reverse_sde_recovers_the_gaussian(sde_name: str, sde_integrator: str) -> None:
    model = gaussian_model(sde_name)
    x, nfe = sample(
        model, N_SAMPLES, n_steps=200, sde_integrator=sde_integrator, generator=seeded(1)
    )
    assert x.dtype == torch.float64 and x.shape == (N_SAMPLES, 2)
    assert_gaussian_moments(x)
    assert nfe >= 200


PC_OPTIONS = [
    {"predictor": "reverse_diffusion", "corrector": "langevin"},
    {"predictor": "euler_maruyama", "corrector": "langevin", "snr": 0.1, "corrector_steps": 2},
    {"predictor": "reverse_diffusion", "corrector": "none"},
]


@pytest.mark.parametrize("options", PC_OPTIONS, ids=lambda o: f"{o['predictor']}-{o['corrector']}")
@pytest.mark.parametrize("sde_name", SDES)
def test_predictor_corrector_recovers_the_gaussian(sde_name: str, options: dict[str, Any]) -> None:
    steps = 200 if options["predictor"] == "euler_maruyama" else 100
    x, nfe = sample(
        gaussian_model(sde_name),
        N_SAMPLES,
        sampler="pc",
        n_steps=steps,
        generator=seeded(2),
        **options,
    )
    assert_gaussian_moments(x)
    corrector_steps = options.get("corrector_steps", 1) if options["corrector"] != "none" else 0
    assert nfe == steps * (1 + corrector_steps)


@pytest.mark.parametrize("sde_name", SDES)
def test_probability_flow_ode_recovers_the_gaussian(sde_name: str) -> None:
    model = gaussian_model(sde_name)
    x, nfe = sample(model, N_SAMPLES, sampler="ode", generator=seeded(3))
    assert_gaussian_moments(x)
    assert model.last_stats is not None and nfe == model.last_stats.nfe > 0


def test_ode_sampler_takes_another_integrator() -> None:
    model = gaussian_model("vp")
    options = {"integrator": "rk4", "integrator_options": {"n_steps": 50}}
    x, nfe = sample(model, 64, sampler="ode", generator=seeded(9), **options)
    assert nfe == 4 * 50  # rk4: four field (score) evaluations per step
    reference, _ = sample(model, 64, sampler="ode", generator=seeded(9))  # dopri5 at 1e-8
    torch.testing.assert_close(x, reference, rtol=1e-4, atol=1e-4)


def test_reverse_sde_counts_one_score_evaluation_per_step() -> None:
    model = gaussian_model("vp")
    for denoise in (True, False):
        _, nfe = sample(model, 8, n_steps=37, denoise=denoise, generator=seeded())
        assert nfe == 37


@pytest.mark.parametrize("sampler", ["reverse_sde", "pc"])
def test_noise_removal_drops_exactly_the_last_steps_noise(sampler: str) -> None:
    """With one seed, ``denoise=False`` differs from the default by the last step's noise
    alone: ``g(s) sqrt(h) z`` for Euler-Maruyama, ``G z`` for reverse diffusion."""
    model = gaussian_model("ve")
    sde = model.field.sde
    options: dict[str, Any] = {"sampler": sampler, "n_steps": 10}
    if sampler == "pc":
        options["corrector"] = "none"
    noisy, _ = sample(model, 4000, denoise=False, generator=seeded(5), **options)
    clean, _ = sample(model, 4000, generator=seeded(5), **options)
    s = torch.tensor(0.1, dtype=torch.float64)  # the last grid time before start_time 0
    if sampler == "pc":
        scale = float(sde.kernel(s)[1])  # G^2 = sigma(s)^2 - a^2 sigma(0)^2 = sigma(s)^2
    else:
        scale = float(sde.diffusion(s)) * 0.1**0.5  # g(s) sqrt(h)
    z = ((noisy - clean) / scale).flatten()
    se = (1.0 / z.numel()) ** 0.5
    assert abs(float(z.mean())) < 4 * se
    assert abs(float(z.var()) - 1.0) < 4 * (2.0 / z.numel()) ** 0.5


@pytest.mark.parametrize("sampler", ["reverse_sde", "pc", "ode"])
def test_a_seed_gives_the_same_samples(sampler: str) -> None:
    model = gaussian_model("subvp")
    first, _ = sample(model, 16, sampler=sampler, **_few_steps(sampler), generator=seeded(7))
    again, _ = sample(model, 16, sampler=sampler, **_few_steps(sampler), generator=seeded(7))
    other, _ = sample(model, 16, sampler=sampler, **_few_steps(sampler), generator=seeded(8))
    torch.testing.assert_close(first, again, rtol=0, atol=0)
    assert not torch.equal(first, other)


def _few_steps(sampler: str) -> dict[str, Any]:
    return {} if sampler == "ode" else {"n_steps": 20}


def test_a_bare_score_model_starts_from_the_sde_prior() -> None:
    sde = REGISTRY.create("sde", "ve", start_time=0.0, sigma_max=5.0)
    score = GaussianScore(MU, SIGMA, sde)
    # One step of reverse diffusion with a zero-noise generator is not possible, so
    # compare with the CNF built on the same score and the SDE prior as its base.
    cnf = CNF(ProbabilityFlow(score), "dopri5", "exact", "backprop", dim=2)
    for sampler in ("pc", "ode"):
        options = _few_steps(sampler)
        bare, nfe_bare = sample(score, 32, sampler=sampler, generator=seeded(4), **options)
        built, nfe_built = sample(cnf, 32, sampler=sampler, generator=seeded(4), **options)
        torch.testing.assert_close(bare, built)
        assert nfe_bare == nfe_built


def conditional_model() -> CNF:
    torch.manual_seed(0)
    return CNF(
        "probability_flow",
        "rk4",
        "exact",
        "backprop",
        dim=2,
        field_options={"context_dim": 3, "score_field_options": {"hidden": [8]}},
        integrator_options={"n_steps": 4},
    ).double()


@pytest.mark.parametrize("sampler", ["reverse_sde", "pc", "ode"])
def test_the_context_reaches_the_score(sampler: str) -> None:
    model = conditional_model()
    eye = torch.eye(3, dtype=torch.float64)
    one, _ = sample(
        model, 8, sampler=sampler, context=eye[0], generator=seeded(), **_few_steps(sampler)
    )
    rows = eye[0].expand(8, 3)
    same, _ = sample(
        model, 8, sampler=sampler, context=rows, generator=seeded(), **_few_steps(sampler)
    )
    other, _ = sample(
        model, 8, sampler=sampler, context=eye[1], generator=seeded(), **_few_steps(sampler)
    )
    torch.testing.assert_close(one, same, rtol=0, atol=0)
    assert not torch.allclose(one, other)
    with pytest.raises(InvalidInputError):
        sample(model, 8, sampler=sampler, generator=seeded(), **_few_steps(sampler))


BAD_OPTIONS = [
    ({"sampler": "reverse_SDE"}, SamplerOptionError, "Unknown sampler 'reverse_SDE'.*reverse_sde"),
    ({"sampler": "pc", "snr": -0.1}, SamplerOptionError, "snr must be a positive"),
    ({"sampler": "pc", "snr": float("nan")}, SamplerOptionError, "snr must be a positive"),
    ({"sampler": "pc", "predictor": "ancestral"}, SamplerOptionError, "Unknown predictor"),
    ({"sampler": "pc", "corrector": "lagevin"}, SamplerOptionError, "Did you mean 'langevin'"),
    ({"sampler": "pc", "corrector_steps": 0}, SamplerOptionError, "corrector='none'"),
    ({"n_steps": 0}, SamplerOptionError, "n_steps must be a positive integer"),
    ({"snr": 0.2}, SamplerOptionError, "snr=0.2 is an option of the pc sampler"),
    ({"sampler": "ode", "n_steps": 10}, SamplerOptionError, "reverse_sde and pc samplers"),
    ({"sampler": "pc", "sde_integrator": "em"}, SamplerOptionError, "reverse_sde sampler"),
    ({"sde_integrator_options": {"n_steps": 5}}, SamplerOptionError, "give n_steps to sample"),
    ({"sde_integrator": "eular_maruyama"}, UnknownComponentError, "euler_maruyama"),
    ({"sampler": "ode", "integrator_options": {"n_steps": 3}}, SamplerOptionError, "name the"),
]


@pytest.mark.parametrize(("options", "error", "match"), BAD_OPTIONS, ids=lambda v: str(v)[:40])
def test_bad_options_raise_and_say_why(
    options: dict[str, Any], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        sample(gaussian_model("vp"), 4, **options)


def test_a_model_that_is_no_score_model_is_refused_with_what_to_build() -> None:
    cnf = CNF("mlp", "rk4", "exact", "backprop", dim=2, integrator_options={"n_steps": 2})
    for sampler in ("reverse_sde", "pc"):
        with pytest.raises(IncompatibleComponentsError, match=r"probability_flow.*score_matching"):
            sample(cnf, 4, sampler=sampler)
    x, nfe = sample(cnf, 4, sampler="ode")  # the ODE sampler takes any CNF
    assert x.shape == (4, 2) and nfe == 8
    with pytest.raises(TypeError, match=r"flowkit\.CNF"):
        sample(torch.nn.Linear(2, 2), 4)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError):
        sample(gaussian_model("vp"), 0)
