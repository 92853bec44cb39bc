"""Strong and weak convergence orders of every registered SDE integrator, on SDEs with
known solutions: Ornstein-Uhlenbeck (additive noise, forward and in reverse time) and
geometric Brownian motion (multiplicative noise), in float64.

The measurement and its band are :mod:`flowkit.testing.sde_order`'s: one Brownian path
per configuration (1000 paths, a grid 16 times finer than the finest of 8, 16, 32, 64
steps) shared by every step size and by the exact solution; the slope of log error
against log step, with its standard error from the per-path errors; SDE orders are
spaced by 1/2, so a slope supports the declared order ``p`` when it is at least
``p - 1/4``, and a measurement counts only when four standard errors fit in that 1/4.

Expectations come from the declared capabilities: ``strong_order`` on GBM, the larger of
``strong_order`` and ``additive_strong_order`` on OU, ``weak_order`` for every weak error
(mean and second moment, estimated on the same paths as the exact solution) large enough
to measure, in the integrator's ``sde_type`` (GBM's Stratonovich solution for a
Stratonovich method).
"""

from __future__ import annotations

import functools
import math
import warnings

import pytest
import torch
from registry_helpers import suite_registry

from flowkit.kinds import capabilities_of
from flowkit.testing.sde_order import (
    ORDER_BAND,
    GridBrownian,
    LinearSDE,
    SDEOrderMeasurement,
    geometric_brownian_motion,
    measure_sde_order,
    ornstein_uhlenbeck,
)

SDE_INTEGRATORS = suite_registry().names("sde_integrator")
CONFIGURATIONS = {
    "gbm": (geometric_brownian_motion(), 0.0, 1.0),
    "ou": (ornstein_uhlenbeck(), 0.0, 1.0),
    "ou reverse time": (ornstein_uhlenbeck(), 1.0, 0.0),
}


def _capabilities(name: str) -> dict[str, object]:
    return capabilities_of(suite_registry().get("sde_integrator", name).factory, "sde_integrator")


@functools.cache
def _measure(name: str, configuration: str) -> dict[str, SDEOrderMeasurement]:
    problem, t0, t1 = CONFIGURATIONS[configuration]

    def build(steps: int) -> object:
        return suite_registry().create("sde_integrator", name, n_steps=steps)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # GBM under a Stratonovich reading
        return measure_sde_order(
            build,  # type: ignore[arg-type]
            problem,
            t0=t0,
            t1=t1,
            reading=_capabilities(name)["sde_type"],  # type: ignore[arg-type]
        )


@pytest.mark.parametrize("configuration", list(CONFIGURATIONS))
@pytest.mark.parametrize("name", SDE_INTEGRATORS)
def test_strong_order(name: str, configuration: str) -> None:
    caps = _capabilities(name)
    declared = float(caps["strong_order"])  # type: ignore[arg-type]
    if configuration != "gbm":  # additive noise
        declared = max(declared, float(caps["additive_strong_order"]))  # type: ignore[arg-type]
    strong = _measure(name, configuration)["strong"]
    assert strong.resolved, f"too noisy to judge: {strong.describe()}"
    assert strong.supports(declared), f"declared {declared}: {strong.describe()}"


@pytest.mark.parametrize("name", SDE_INTEGRATORS)
def test_weak_order(name: str) -> None:
    declared = float(_capabilities(name)["weak_order"])  # type: ignore[arg-type]
    measured = [
        (configuration, m)
        for configuration in CONFIGURATIONS
        for kind, m in _measure(name, configuration).items()
        if kind != "strong"
    ]
    resolved = [(c, m) for c, m in measured if m.resolved]
    assert len(resolved) >= 2, "fewer than two weak errors large enough to measure an order"
    for configuration, m in resolved:
        assert m.supports(declared), f"declared {declared}: {m.describe()} on {configuration}"


def test_the_band_tells_euler_maruyama_from_a_strong_order_one_method() -> None:
    """On GBM, Euler-Maruyama's strong slope is below 1 - 1/4, Milstein's above it."""
    em = _measure("euler_maruyama", "gbm")["strong"]
    assert em.resolved and not em.supports(1.0) and em.supports(0.5), em.describe()
    if "torchsde.milstein" in SDE_INTEGRATORS:
        assert _measure("torchsde.milstein", "gbm")["strong"].supports(1.0)


# -- the measurement's own pieces ------------------------------------------------------


@functools.cache
def _many_paths() -> GridBrownian:
    """20000 paths on 32 cells of [0, 1] (the OU reference's error, c^2 d^2 / 4.5 = 2e-4,
    is 1/20 of the moments' standard errors here)."""
    return GridBrownian(0.0, 1.0, (20000, 1), 32, generator=torch.Generator().manual_seed(9))


@pytest.mark.parametrize(
    ("problem", "t0", "t1", "reading"),
    [
        (ornstein_uhlenbeck(), 0.0, 1.0, "ito"),
        (ornstein_uhlenbeck(rate=2.0, scale=0.5, y0=-1.0), 0.0, 0.5, "ito"),
        (geometric_brownian_motion(), 0.0, 1.0, "ito"),
        (geometric_brownian_motion(), 0.0, 1.0, "stratonovich"),
    ],
    ids=["ou", "ou-2", "gbm-ito", "gbm-stratonovich"],
)
def test_exact_paths_have_the_closed_form_moments(
    problem: LinearSDE, t0: float, t1: float, reading: str
) -> None:
    """Mean and second moment of the exact solution over 20000 paths, within 4 SE."""
    finals = problem.exact(_many_paths(), t0, t1, reading)[:, 0]  # type: ignore[arg-type]
    for moment, expected in zip(
        (finals, finals**2),
        problem.closed_form_moments(t1 - t0, reading),
        strict=True,  # type: ignore[arg-type]
    ):
        standard_error = float(moment.std()) / math.sqrt(moment.numel())
        assert abs(float(moment.mean()) - expected) < 4 * standard_error


def test_reverse_time_ou_is_the_forward_solution_of_the_reversed_sde() -> None:
    """From 1 down to 0, OU ``dy = -y dt + b dW`` read in ``u = -t`` grows like ``e^{u}``:
    mean ``y0 e``, variance ``b^2 (e^2 - 1) / 2`` (``dY = Y du + b dB``)."""
    problem = ornstein_uhlenbeck()
    finals = problem.exact(_many_paths(), 1.0, 0.0)[:, 0]
    mean, variance = problem.y0 * math.e, problem.b**2 * math.expm1(2.0) / 2
    assert abs(float(finals.mean()) - mean) < 4 * math.sqrt(variance / finals.numel())
    assert abs(float(finals.var()) - variance) < 4 * variance * math.sqrt(2 / finals.numel())


def test_grid_brownian_increments_and_areas_compose() -> None:
    """Increments and space-time areas over adjoining intervals add up as they must:
    ``U[a, c] = U[a, b] + U[b, c] + (c - b) (W(b) - W(a))``; moments are Brownian."""
    bm = GridBrownian(0.0, 2.0, (20000, 1), 8, generator=torch.Generator().manual_seed(4))
    i_ab, u_ab = bm(0.5, 1.25, return_U=True)
    i_bc, u_bc = bm(1.25, 2.0, return_U=True)
    i_ac, u_ac = bm(0.5, 2.0, return_U=True)
    torch.testing.assert_close(i_ac, i_ab + i_bc)
    torch.testing.assert_close(u_ac, u_ab + u_bc + 0.75 * i_ab)
    h, n = 1.5, i_ac.numel()
    for value, expected, spread in (
        ((i_ac**2).mean(), h, h * math.sqrt(2 / n)),
        ((u_ac * i_ac).mean(), h**2 / 2, float((u_ac * i_ac).std()) / math.sqrt(n)),
        ((u_ac**2).mean(), h**3 / 3, float((u_ac**2).std()) / math.sqrt(n)),
    ):
        assert abs(float(value) - expected) < 4 * spread


def test_grid_brownian_refuses_a_time_off_its_grid() -> None:
    bm = GridBrownian(0.0, 1.0, (2, 1), 8)
    with pytest.raises(ValueError, match="not a grid time; use step counts that divide 8"):
        bm(0.0, 0.3)
    with pytest.raises(ValueError, match="not a grid time"):
        bm(0.0, 1.5)


def test_the_band_is_half_the_spacing_of_sde_orders() -> None:
    assert ORDER_BAND == 0.25
    measurement = SDEOrderMeasurement("strong", (8, 16), (1.0, 0.5), (0.0, 0.0), 0.76, 0.06)
    assert measurement.resolved and measurement.supports(1.0) and not measurement.supports(1.5)
    assert not SDEOrderMeasurement("weak", (8, 16), (1.0, 0.5), (0.0, 0.0), 1.0, 0.07).resolved
