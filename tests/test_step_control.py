"""Step-size control: the default integral controller (torchdiffeq's) and Hairer's PI option.

``benchmarks/step_control.py`` measured the two; these tests pin the behaviour
users rely on: the default, the option that selects PI, and PI's gain on the
trained toy field's log-density solve (no gradients).
"""

from __future__ import annotations

import math

import pytest
import torch
from registry_helpers import suite_registry

from flowkit.bench.assets import load_toy_field, toy_data
from flowkit.dynamics import CNFDynamics
from flowkit.rk.adaptive import DEFAULT_CONTROLLER_BETA, PI_CONTROLLER_BETA
from flowkit.solve import solve

ADAPTIVE = ("dopri5", "tsit5", "bosh3", "adaptive_heun", "dopri8")


@pytest.mark.parametrize("name", ADAPTIVE)
def test_native_adaptive_methods_default_to_the_integral_controller(name: str) -> None:
    registry = suite_registry()
    assert registry.create("integrator", name).controller_beta == DEFAULT_CONTROLLER_BETA == 0.0
    pi = registry.create("integrator", name, controller_beta=PI_CONTROLLER_BETA)
    assert pi.controller_beta == 0.04


def test_controller_beta_out_of_range_raises() -> None:
    with pytest.raises(ValueError, match=r"controller_beta must be below 0\.5"):
        suite_registry().create("integrator", "dopri5", controller_beta=0.5)


def _log_density_solve(beta: float, tol: float) -> tuple[torch.Tensor, int, int]:
    registry = suite_registry()
    field = load_toy_field(2, dtype=torch.float64, registry=registry)
    x = toy_data(2, 128, seed=1, dtype=torch.float64)
    dynamics = CNFDynamics(field, registry.create("trace_estimator", "exact")).prepare(x)
    options = {"rtol": tol, "atol": tol, "controller_beta": beta}
    with torch.no_grad():
        sol = solve(
            dynamics,
            dynamics.initial_state(x),
            [1.0, 0.0],
            integrator="dopri5",
            integrator_options=options,
            registry=registry,
        )
    return sol.ys[1][-1], sol.stats.nfe, sol.stats.n_rejected


def _fitted_log_nfe(points: list[tuple[float, int]]) -> tuple[float, float]:
    """Least-squares ``log nfe = a + b log error`` (as ``benchmarks/step_control.py``)."""
    xs = [math.log(e) for e, _ in points]
    ys = [math.log(n) for _, n in points]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum(
        (x - mx) ** 2 for x in xs
    )
    return my - b * mx, b


def test_pi_needs_fewer_evaluations_for_the_same_error_on_the_toy_fields_log_density() -> None:
    """The trained toy field's log-density solve, dopri5 at tolerances 1e-3 to 1e-8.

    At every tolerance the PI controller rejects no more steps and takes no more
    evaluations than the integral controller (fewer rejections in total), and
    its evaluations at the integral controller's errors (log-log fit over the
    tolerances) are fewer.
    """
    exact, _, _ = _log_density_solve(0.0, 1e-11)
    runs: dict[float, list[tuple[float, int, int]]] = {0.0: [], PI_CONTROLLER_BETA: []}
    for tol in (1e-3, 1e-4, 1e-5, 1e-6, 1e-7, 1e-8):
        for beta, points in runs.items():
            y, nfe, rejected = _log_density_solve(beta, tol)
            points.append((float((y - exact).abs().max()), nfe, rejected))
    old, pi = runs[0.0], runs[PI_CONTROLLER_BETA]
    for (_, old_nfe, old_rej), (_, pi_nfe, pi_rej) in zip(old, pi, strict=True):
        assert pi_nfe <= old_nfe and pi_rej <= old_rej
    assert sum(r for *_, r in pi) < sum(r for *_, r in old)
    a_old, b_old = _fitted_log_nfe([(e, n) for e, n, _ in old])
    a_pi, b_pi = _fitted_log_nfe([(e, n) for e, n, _ in pi])
    gaps = [(a_pi + b_pi * math.log(e)) - (a_old + b_old * math.log(e)) for e, _, _ in old]
    assert sum(gaps) / len(gaps) < 0.0
