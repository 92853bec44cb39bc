"""Probability-flow likelihoods against the closed form of Gaussian data, in float64.

Data ``N(mu, Sigma)`` (hypothesis draws ``mu``, an SPD ``Sigma`` and the points)
noised by every registered SDE have Gaussian marginals with an exact score
(:class:`flowkit.sde.GaussianScore`). The probability flow ODE with that score,
started from the exact end-time marginal (the CNF's base; SDE ``start_time = 0``),
must return ``log N(x; mu, Sigma)``
(:mod:`flowkit.testing.sde_problems`):

* to 1e-5 for every registered integrator (from the registry). Adaptive ones of
  order >= 3 run at ``rtol = atol = 1e-5 / GLOBAL_ERROR_FACTOR``; the others
  take fixed steps (adaptive ones of order <= 2 pinned to them, as the kit's order
  measurement does) chosen from their declared order by
  :func:`flowkit.testing.tolerances.fixed_step_for`. Order-1 methods would need
  about 10^6 steps for 1e-5; they are held to their order's bound at
  :data:`MAX_STEPS` steps and must show their order (error halves as the steps
  double) instead;
* to 1e-5 for every deterministic trace estimator (``analytic`` through the
  field's closed-form divergence), and within 4 standard errors for the
  stochastic ones (each row of a repeated point draws its own probe, so one solve
  gives many independent estimates);
* with gradients ``d log p / dx = -Sigma^{-1} (x - mu)`` for every registered
  gradient strategy (with a compatible integrator chosen by the compatibility
  function).

The full product integrator x SDE runs under the ``nightly`` profile; otherwise
each integrator meets one SDE (round robin), and every SDE meets many.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from hypothesis import Phase, given, settings
from hypothesis import strategies as st
from registry_helpers import suite_registry

from flowkit import CNF, check_compatibility
from flowkit.testing.combinations import FULL_PRODUCT_PROFILES
from flowkit.testing.order import order_is_supported, pinned_step_options
from flowkit.testing.sde_problems import gaussian_data_score, gaussian_problem
from flowkit.testing.tolerances import (
    GLOBAL_ERROR_FACTOR,
    fixed_step_for,
    integrator_tolerance,
    roundoff,
    statistical_bound,
)

REGISTRY = suite_registry()
SDES = REGISTRY.names("sde")
INTEGRATORS = REGISTRY.names("integrator")
TRACES = REGISTRY.names("trace_estimator")
DETERMINISTIC = [
    n for n in TRACES if not REGISTRY.get("trace_estimator", n).capabilities["stochastic"]
]
STOCHASTIC = [n for n in TRACES if REGISTRY.get("trace_estimator", n).capabilities["stochastic"]]
STRATEGIES = REGISTRY.names("gradient_strategy")

TARGET = 1e-5
"""The log-density error every integrator and deterministic estimator must meet."""

MAX_STEPS = 100
"""Fixed steps an integrator may take per solve here (keeps the suite fast)."""

SWEEP_OPTIONS: dict[str, dict[str, Any]] = {"ve": {"sigma_min": 0.1, "sigma_max": 3.0}}
"""SDE options of the integrator sweep (the others use each SDE's defaults). VE's
flow runs at the rate ``log(sigma_max / sigma_min)`` over the whole span; a ratio
of 30 instead of 5000 keeps second-order methods within :data:`MAX_STEPS`."""

_PROFILE = settings.default
_FULL = settings._current_profile in FULL_PRODUCT_PROFILES  # the profile conftest.py loaded


def _few(n: int) -> settings:
    """The current profile with ``n`` examples (nightly: its own count), no shrinking.

    Every example is a few ODE solves; shrinking a failure would take minutes, and
    the failing example is reported as drawn.
    """
    return settings(
        _PROFILE,
        max_examples=max(n, _PROFILE.max_examples) if _FULL else n,
        phases=[Phase.explicit, Phase.reuse, Phase.generate],
    )


@st.composite
def gaussian_data(draw: st.DrawFn, min_dim: int = 1, max_dim: int = 3, batch: int = 2) -> tuple:
    """``(mu, Sigma, x)``: bounded mean, eigenvalues in [0.2, 2], a random rotation, points."""
    dim = draw(st.integers(min_dim, max_dim))
    bounded = st.floats(-1.5, 1.5, allow_nan=False)
    mean = torch.tensor(draw(st.lists(bounded, min_size=dim, max_size=dim)))
    eigen = torch.tensor(draw(st.lists(st.floats(0.2, 2.0), min_size=dim, max_size=dim)))
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    rotation, _ = torch.linalg.qr(torch.randn(dim, dim, generator=gen, dtype=torch.float64))
    covariance = rotation @ torch.diag(eigen) @ rotation.T
    covariance = 0.5 * (covariance + covariance.T)
    x = (
        mean
        + 1.5
        * torch.randn(batch, dim, generator=gen, dtype=torch.float64)
        @ (rotation * eigen.sqrt()).T
    )
    return mean, covariance, x


def _sde(name: str, options: dict[str, Any] | None = None) -> Any:
    return REGISTRY.create("sde", name, start_time=0.0, **(options or {}))


def _true_log_prob(mean: torch.Tensor, covariance: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return torch.distributions.MultivariateNormal(mean, covariance).log_prob(x)


def _adaptive_tolerance(order: int) -> float:
    """``rtol = atol`` for an adaptive method of ``order``: within the target by the model.

    ``TARGET / GLOBAL_ERROR_FACTOR``, and a decade below the suite's usual
    ``max(1e-9, 10**-(2 order + 1))`` (:func:`flowkit.testing.cnf_problems.solver_options`)
    when that is tighter: torchdiffeq's adaptive methods step past the end time and
    return it by interpolation over the last step, an error their tolerance does
    not control (``torchdiffeq.dopri8`` at 1e-7 is off by 2e-4 on VE here).
    """
    return min(TARGET / GLOBAL_ERROR_FACTOR, max(1e-9, 10.0 ** -(2 * order + 2)))


def _integrator_options(name: str, rate: float) -> tuple[dict[str, Any], float, int | None]:
    """Options, the error bound, and (for fixed steps) the step count for ``name``.

    Fixed steps: the truncation model of :mod:`flowkit.testing.tolerances` holds
    for problems of unit rate; a field of rate ``r`` over a unit span is one of
    unit rate over the span ``r`` with steps ``r h``, so the step count for the
    target comes from :func:`fixed_step_for` over the span ``r`` (at most
    :data:`MAX_STEPS`), and the bound from :func:`integrator_tolerance` there.
    """
    spec = REGISTRY.get("integrator", name)
    caps, accepted = spec.capabilities, set(spec.options() or []) or None
    order = int(caps["order"])
    if caps["adaptive"] and order >= 3:
        tol = _adaptive_tolerance(order)
        return {"rtol": tol, "atol": tol}, TARGET, None
    span = max(rate, 1.0)
    n = min(fixed_step_for(order, TARGET, span=span)[1], MAX_STEPS)
    n += n % 2  # even, so that the order check can halve it
    options = pinned_step_options(caps, accepted, 1.0 / n, n)
    if options is None:
        pytest.fail(f"integrator {name!r} offers no way to set its step (step_size or n_steps)")
    bound = integrator_tolerance(
        torch.float64, order=order, adaptive=False, step_size=span / n, span=span
    )
    return options, max(TARGET, bound.atol), n


def _sweep() -> list[tuple[str, str]]:
    if _FULL:
        return [(i, s) for i in INTEGRATORS for s in SDES]
    return [(name, SDES[k % len(SDES)]) for k, name in enumerate(INTEGRATORS)]


def _log_prob(field: Any, base: Any, x: torch.Tensor, integrator: str, trace: str, **kw: Any):
    model = CNF(field, integrator, trace, "backprop", dim=x.shape[1], base=base, **kw)
    with torch.no_grad():
        return model.log_prob(x)


@pytest.mark.parametrize(("integrator", "sde"), _sweep())
@_few(2)
@given(data=gaussian_data())
def test_every_integrator_returns_the_data_log_density(integrator: str, sde: str, data) -> None:
    mean, covariance, x = data
    field, base = gaussian_problem(mean, covariance, _sde(sde, SWEEP_OPTIONS.get(sde)))
    options, bound, n = _integrator_options(integrator, field.rate())
    want = _true_log_prob(mean, covariance, x)
    got = _log_prob(field, base, x, integrator, "analytic", integrator_options=options)
    error = float((got - want).abs().max())
    assert error <= bound, f"{integrator} on {sde}: log-density off by {error:.3g} > {bound:.3g}"
    spec = REGISTRY.get("integrator", integrator)
    order = spec.capabilities["order"]
    if n is not None and bound > TARGET:  # too coarse for 1e-5: the error must show its order
        accepted = set(spec.options() or []) or None
        half = pinned_step_options(spec.capabilities, accepted, 2.0 / n, n // 2)
        coarse = _log_prob(field, base, x, integrator, "analytic", integrator_options=half)
        coarse_error = float((coarse - want).abs().max())
        if coarse_error > roundoff(torch.float64, operations=100 * n).atol:
            slope = math.log2(coarse_error / max(error, 1e-300))
            assert order_is_supported(slope, order), (
                f"{integrator}: error {coarse_error:.3g} -> {error:.3g} when the steps double, "
                f"order {slope:.2f}, declared {order}"
            )


@pytest.mark.parametrize("sde", SDES)
@pytest.mark.parametrize("trace", DETERMINISTIC)
@_few(2)
@given(data=gaussian_data())
def test_every_deterministic_estimator_returns_the_data_log_density(trace: str, sde: str, data):
    mean, covariance, x = data
    field, base = gaussian_problem(mean, covariance, _sde(sde))
    tol = _adaptive_tolerance(5)
    options = {"rtol": tol, "atol": tol}
    got = _log_prob(field, base, x, "dopri5", trace, integrator_options=options)
    want = _true_log_prob(mean, covariance, x)
    error = float((got - want).abs().max())
    assert error <= TARGET, f"{trace} on {sde}: log-density off by {error:.3g}"


@pytest.mark.parametrize("sde", SDES)
@pytest.mark.parametrize("trace", STOCHASTIC)
def test_stochastic_estimators_are_unbiased(trace: str, sde: str) -> None:
    """One point repeated: every row draws its own probe, so the rows are independent."""
    gen = torch.Generator().manual_seed(7)
    mean = torch.tensor([0.4, -0.8, 1.1])
    factor = torch.randn(3, 3, generator=gen, dtype=torch.float64)
    covariance = 0.4 * factor @ factor.T + 0.3 * torch.eye(3)
    point = mean + torch.tensor([[0.7, -0.5, 0.9]])
    field, base = gaussian_problem(mean, covariance, _sde(sde))
    n_rows = 256
    tol = _adaptive_tolerance(5)
    model = CNF(
        field,
        "dopri5",
        trace,
        "backprop",
        dim=3,
        base=base,
        seed=11,
        integrator_options={"rtol": tol, "atol": tol},
    )
    with torch.no_grad():
        estimates = model.log_prob(point.expand(n_rows, 3).contiguous())
    want = float(_true_log_prob(mean, covariance, point))
    std_error = float(estimates.std()) / math.sqrt(n_rows)
    gap = abs(float(estimates.mean()) - want)
    assert std_error > 0, f"{trace}: every probe gave the same estimate (no randomness)"
    assert gap <= statistical_bound(std_error) + TARGET, (
        f"{trace} on {sde}: mean {float(estimates.mean()):.6f} vs exact {want:.6f}, "
        f"{gap / std_error:.1f} standard errors ({std_error:.3g}) apart"
    )


def _gradient_integrator(strategy: str) -> str:
    """The integrator for ``strategy``: one the compatibility function accepts.

    Fixed-step ones first, then the highest order: a fixed grid ends exactly at
    the data end ``s = 0``, while torchdiffeq's adaptive solvers step past the end
    of their span (and interpolate back); past ``s = 0`` the VP kernels are
    undefined (``sigma(s)^2 < 0``), which a base-to-data solve (the adjoint's
    backward pass) would hit.
    """
    spec = REGISTRY.get("gradient_strategy", strategy)
    fits = [
        s for s in REGISTRY.specs("integrator") if check_compatibility(integrator=s, gradient=spec)
    ]
    if not fits:
        pytest.fail(f"no registered integrator fits the gradient strategy {strategy!r}")
    best = max(fits, key=lambda s: (not s.capabilities["adaptive"], s.capabilities["order"]))
    return best.name


@pytest.mark.parametrize("strategy", STRATEGIES)
@_few(2)
@given(data=gaussian_data(min_dim=2, max_dim=2, batch=2), which=st.sampled_from(SDES))
def test_every_gradient_strategy_gives_the_data_score(strategy: str, data, which: str) -> None:
    mean, covariance, x = data
    field, base = gaussian_problem(mean, covariance, _sde(which, SWEEP_OPTIONS.get(which)))
    integrator = _gradient_integrator(strategy)
    options, bound, _ = _integrator_options(integrator, field.rate())
    # the field is affine in x, so its divergence does not depend on x: the analytic
    # trace gives the same gradient as an autograd trace, at a fraction of the cost
    model = CNF(
        field, integrator, "analytic", strategy, dim=2, base=base, integrator_options=options
    )
    x = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(model.log_prob(x).sum(), x)
    want = gaussian_data_score(x.detach(), mean, covariance)
    # the log-density's error bound, scaled by the score's size (its derivative in x)
    scale = 1.0 + float(want.abs().max())
    error = float((grad - want).abs().max())
    assert error <= bound * scale, (
        f"{strategy} with {integrator} on {which}: gradient off by {error:.3g}"
    )
