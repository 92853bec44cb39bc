"""Integrator options are declared by two bases, and mean one thing everywhere.

* Every registered integrator derives from exactly one option base, matching
  its ``adaptive`` capability.
* ``n_steps`` = equal steps across the whole span ``t[0]..t[-1]`` and
  ``step_size`` = the largest step, split per output interval by the one
  routine :meth:`FixedStepIntegrator.step_counts`, for every fixed-step
  integrator (native, torchdiffeq, torchsde).
* The option bases validate their options; ``with_norm`` gives a copy.
* Special gradient paths are protocols: the strategy and the conformance kit
  refuse a class that declares a path it does not implement (the
  compatibility function decides from the flags alone).
"""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from integrator_helpers import INTEGRATORS, spec
from torch import Tensor

import flowkit
from flowkit.compat import check_compatibility
from flowkit.errors import IncompatibleComponentsError
from flowkit.interfaces import (
    GRADIENT_PATHS,
    AdaptiveIntegrator,
    FixedStepIntegrator,
    Integrator,
    SupportsCheckpointing,
    missing_gradient_paths,
)
from flowkit.registry import get_registry
from flowkit.rk import mixed_rms_norm
from flowkit.solution import Solution
from flowkit.testing.conformance import ConformanceError, check_integrator
from flowkit.testing.problems import exponential_decay

FIXED = [n for n in INTEGRATORS if not spec(n).capabilities["adaptive"]]
ADAPTIVE = [n for n in INTEGRATORS if spec(n).capabilities["adaptive"]]
TIMES = torch.tensor([0.0, 0.25, 1.0], dtype=torch.float64)


def _solve(name: str, times: Tensor = TIMES, **options: Any) -> Solution:
    p = exponential_decay()
    solver = get_registry().create("integrator", name, **options)
    return solver.integrate(p.func, p.y0, times)


# -- one base per integrator ----------------------------------------------------
@pytest.mark.parametrize("name", INTEGRATORS)
def test_every_integrator_declares_the_option_base_of_its_kind(name: str) -> None:
    factory = spec(name).factory
    adaptive = spec(name).capabilities["adaptive"]
    assert issubclass(factory, AdaptiveIntegrator) is adaptive
    assert issubclass(factory, FixedStepIntegrator) is (not adaptive)


@pytest.mark.parametrize("name", INTEGRATORS)
def test_every_integrator_implements_the_gradient_paths_it_declares(name: str) -> None:
    assert missing_gradient_paths(spec(name).factory) == []


# -- n_steps and step_size: one meaning ---------------------------------------------
def test_step_counts_split_the_whole_span() -> None:
    class Steps(FixedStepIntegrator):
        def integrate(self, func, y0, t):  # type: ignore[no-untyped-def]
            raise NotImplementedError

    assert Steps(n_steps=4).step_counts([0.0, 0.25, 1.0]) == [1, 3]
    assert Steps(n_steps=4).step_counts([1.0, 0.75, 0.0]) == [1, 3]  # backward in time
    assert Steps(n_steps=3).step_counts([0.0, 0.1, 1.0]) == [1, 3]  # ceil(0.9 * 3)
    assert Steps(step_size=0.3).step_counts([0.0, 0.5, 1.0]) == [2, 2]
    assert Steps(step_size=0.1).step_counts([0.0, 0.3, 1.0]) == [3, 7]  # no round-off sliver
    assert Steps().n_steps == 100 and Steps().step_counts([0.0, 2.0]) == [100]


@pytest.mark.parametrize("name", FIXED)
@pytest.mark.parametrize("direction", ["forward", "backward"])
def test_n_steps_is_equal_steps_across_the_whole_span(name: str, direction: str) -> None:
    times = TIMES if direction == "forward" else TIMES.flip(0)
    solution = _solve(name, times, n_steps=8)
    # |0.25| / (1/8) = 2 steps, then 0.75 / (1/8) = 6 steps: 8 across the span.
    assert solution.stats.n_accepted == 8
    assert solution.stats.final_step_size == pytest.approx(0.125)


@pytest.mark.parametrize("name", FIXED)
def test_step_size_is_the_largest_step_in_each_interval(name: str) -> None:
    solution = _solve(name, step_size=0.3)
    # 0.25 -> 1 step; 0.75 / 0.3 = 2.5 -> 3 steps of 0.25.
    assert solution.stats.n_accepted == 4
    assert solution.stats.final_step_size == pytest.approx(0.25)


@pytest.mark.parametrize("name", FIXED)
def test_fixed_step_options_are_validated_by_the_base(name: str) -> None:
    create = get_registry().create
    with pytest.raises(ValueError, match="either step_size or n_steps"):
        create("integrator", name, step_size=0.1, n_steps=10)
    for bad in (0.0, -0.1, math.inf, math.nan):
        with pytest.raises(ValueError, match="step_size must be > 0 and finite"):
            create("integrator", name, step_size=bad)
    with pytest.raises(TypeError, match="step_size must be a number"):
        create("integrator", name, step_size="0.1")
    for bad_n in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match="n_steps must be a positive integer"):
            create("integrator", name, n_steps=bad_n)


def test_same_method_gives_the_same_steps_in_every_backend() -> None:
    """RK4 natively and in torchdiffeq: the same grid, output times on it."""
    for options in ({"n_steps": 8}, {"step_size": 0.3}):
        native = _solve("rk4", **options)
        backend = _solve("torchdiffeq.rk4", **options)
        assert native.stats.n_accepted == backend.stats.n_accepted
        torch.testing.assert_close(native.ys, backend.ys, rtol=1e-14, atol=1e-14)
    for options in ({"n_steps": 8}, {"step_size": 0.3}):
        native = _solve("euler", **options)
        backend = _solve("torchsde.euler", **options)
        torch.testing.assert_close(native.ys, backend.ys, rtol=1e-12, atol=1e-12)


def test_torchdiffeq_grid_constructor_is_exclusive_with_the_step_options() -> None:
    create = get_registry().create
    grid = lambda func, y0, t: t  # noqa: E731
    for option in ({"step_size": 0.1}, {"n_steps": 4}):
        with pytest.raises(ValueError, match="grid_constructor or step_size/n_steps"):
            create("integrator", "torchdiffeq.rk4", grid_constructor=grid, **option)
    # torchdiffeq's own grid, when asked for: one step per output interval here.
    assert _solve("torchdiffeq.rk4", grid_constructor=grid).stats.n_accepted == 2


def test_max_steps_counts_the_steps_of_step_counts() -> None:
    solution = _solve("rk4", n_steps=8, max_steps=3, on_max_steps="return")
    assert solution.stats.status == "max_steps_reached"
    assert solution.stats.n_accepted == 3


# -- the adaptive base -------------------------------------------------------------
@pytest.mark.parametrize("name", ADAPTIVE)
def test_adaptive_options_are_validated_by_the_base(name: str) -> None:
    create = get_registry().create
    cases: list[tuple[dict[str, Any], type[Exception], str]] = [
        ({"rtol": 0.0, "atol": 0.0}, ValueError, "rtol and atol are both 0"),
        ({"rtol": -1.0}, ValueError, "rtol"),
        ({"first_step": -0.1}, ValueError, "first_step must be > 0"),
        ({"max_step": 0.0}, ValueError, "max_step must be > 0"),
        ({"min_step": 0.1, "max_step": 0.01}, ValueError, "below min_step"),
        ({"min_step": 0.1, "first_step": 0.01}, ValueError, "below min_step"),
        ({"norm": "rms"}, TypeError, "norm must be callable"),
    ]
    for options, error, match in cases:
        with pytest.raises(error, match=match):
            create("integrator", name, **options)


@pytest.mark.parametrize("name", ["dopri5", "bosh3"])
def test_native_adaptive_budget_options_are_validated(name: str) -> None:
    create = get_registry().create
    for bad in (0, None, 1.5, True):
        with pytest.raises(ValueError, match="max_steps must be a positive integer"):
            create("integrator", name, max_steps=bad)
    with pytest.raises(ValueError, match="on_max_steps must be 'raise' or 'return'"):
        create("integrator", name, on_max_steps="warn")


@pytest.mark.parametrize("name", ["dopri5", "torchdiffeq.dopri5"])
def test_with_norm_gives_a_copy_whose_solves_use_the_norm(name: str) -> None:
    solver = get_registry().create("integrator", name, rtol=1e-6, atol=1e-8)
    calls = []

    def norm(leaves: Any) -> Tensor:
        calls.append(1)
        return mixed_rms_norm(leaves if isinstance(leaves, tuple) else (leaves,))

    clone = solver.with_norm(norm)
    assert type(clone) is type(solver) and clone is not solver
    assert clone.norm is norm and solver.norm is mixed_rms_norm
    assert (clone.rtol, clone.atol) == (solver.rtol, solver.atol)
    p = exponential_decay()
    solver.integrate(p.func, p.y0, p.times(2))
    assert calls == []
    clone.integrate(p.func, p.y0, p.times(2))
    assert calls, "the copy's solve never called its norm"
    with pytest.raises(TypeError, match="norm must be callable"):
        solver.with_norm(None)  # type: ignore[arg-type]


def test_torchdiffeq_step_budget_is_validated_by_the_base() -> None:
    create = get_registry().create
    for bad in (0, -1):
        with pytest.raises(ValueError, match="max_steps must be a positive integer"):
            create("integrator", "torchdiffeq.dopri5", max_num_steps=bad)
    assert create("integrator", "torchdiffeq.dopri5", max_num_steps=7).max_steps == 7


def test_torchdiffeq_step_bounds_reach_torchdiffeq() -> None:
    p = exponential_decay()
    solver = get_registry().create("integrator", "torchdiffeq.dopri5", max_step=0.05)
    assert solver.max_step == 0.05
    solution = solver.integrate(p.func, p.y0, p.times(2))
    assert solution.stats.n_accepted >= math.ceil(float(p.t1 - p.t0) / 0.05)


def test_rtol_to_a_fixed_step_method_names_the_step_options() -> None:
    p = exponential_decay()
    with pytest.raises(TypeError, match=r"takes no rtol .*step_size or n_steps"):
        flowkit.odeint(p.func, p.y0, p.times(2), method="torchsde.heun", rtol=1e-3)


# -- gradient paths as protocols ------------------------------------------------------
class _Plain(Integrator):
    order = 1

    def integrate(self, func, y0, t):  # type: ignore[no-untyped-def]
        return get_registry().create("integrator", "euler", n_steps=4).integrate(func, y0, t)


class _ClaimsCheckpointing(_Plain, SupportsCheckpointing):
    """Names the protocol as a base and sets the flag, but implements nothing."""

    checkpointable = True


class _FlagOnly(_Plain):
    checkpointable = True


@pytest.mark.parametrize("liar", [_ClaimsCheckpointing, _FlagOnly])
def test_a_declared_but_missing_gradient_path_is_refused(liar: type) -> None:
    assert missing_gradient_paths(liar) == ["checkpointable"]
    checkpoint = get_registry().get("gradient_strategy", "checkpoint")
    # The compatibility function decides from the declared flags alone; the
    # conformance kit and the strategy check that the declared path is there.
    assert check_compatibility(integrator=liar, gradient=checkpoint).ok
    p = exponential_decay()
    with pytest.raises(IncompatibleComponentsError, match="does not implement"):
        checkpoint.factory().solve(liar(), p.func, p.y0, p.times(2))
    with pytest.raises(ConformanceError, match="gradient paths"):
        check_integrator(liar)


@pytest.mark.parametrize(
    ("strategy", "integrator"),
    [("checkpoint", "torchsde.euler"), ("reversible", "rk4"), ("torchdiffeq_adjoint", "rk4")],
)
def test_strategy_without_the_path_says_what_to_choose(strategy: str, integrator: str) -> None:
    registry = get_registry()
    p = exponential_decay()
    solver = registry.create("integrator", integrator)
    with pytest.raises(IncompatibleComponentsError, match=r"=False\. Choose "):
        registry.create("gradient_strategy", strategy).solve(solver, p.func, p.y0, p.times(2))


def test_the_base_integrator_holds_only_integrate() -> None:
    for protocol in GRADIENT_PATHS.values():
        for method in vars(protocol):
            if method.startswith("integrate_"):
                assert not hasattr(Integrator, method)
