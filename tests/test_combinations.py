"""Every combination agrees: log-densities and gradients, for every valid choice.

The combinations come from the registry (a newly installed plugin joins with no
edit here) and are filtered by the one compatibility function. Under the ``ci``
and ``dev`` profiles a pairwise cover runs (every compatible pair of components
of two kinds appears together at least once); under ``nightly`` the full
product. Hypothesis draws dimensions, batches, matrices, time spans and seeds.

References:
    * the ``linear`` field has closed forms (``flowkit.testing.cnf_problems``):
      the log-density, and its gradient with respect to the matrix by autograd
      through ``torch.linalg.matrix_exp`` of the closed form;
    * conditional: every combination with the ``linear`` field (the pairwise
      cover holds each integrator, trace estimator and gradient strategy with
      it) also runs as a conditional CNF whose shift depends on a context per
      sample, against the closed-form conditional log-density, and its
      gradient with respect to the context against autograd through it;
    * neural fields are checked against a reference combination on the same
      weights (``dopri5`` at 1e-10, ``exact`` trace, ``backprop``);
    * stochastic estimators: the batch holds copies of one point, each row
      with its own probes, so the mean log-density must be within 4 standard
      errors (plus the solver bound) of the exact one; gradients are compared
      with the reference solver run on the same probes (same seed).
"""

from __future__ import annotations

import math
import os
import sys

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from registry_helpers import suite_registry
from torch import Tensor

import flowkit
from flowkit.registry import Combination
from flowkit.testing import strategies as fst
from flowkit.testing.cnf_problems import (
    affine_log_prob,
    conditional_affine_field,
    conditional_affine_log_prob,
)
from flowkit.testing.combinations import select_combinations
from flowkit.testing.conformance import accuracy_options
from flowkit.testing.tolerances import Tolerance, statistical_bound

PROFILE = settings._current_profile  # the profile conftest.py loaded
# FLOWKIT_COMBINATIONS=all runs the full product under any profile (cover: the pairwise cover).
_SELECTION = os.environ.get("FLOWKIT_COMBINATIONS", "")
if _SELECTION not in ("", "all", "cover"):
    raise ValueError(f"FLOWKIT_COMBINATIONS must be 'all' or 'cover', got {_SELECTION!r}")
VALID = select_combinations(
    {"all": "nightly", "cover": "ci"}.get(_SELECTION, PROFILE), suite_registry()
)
INVALID = select_combinations(PROFILE, suite_registry(), valid=False)
# Hypothesis's pytest plugin wraps a parametrised test's settings once per item
# (each wrap's parent is the previous one), and reading a setting walks that
# chain recursively: with the full product (~1300 items per test) it passes
# Python's default recursion limit. Raise it in proportion to the items.
sys.setrecursionlimit(max(sys.getrecursionlimit(), 4 * len(VALID) + 2000))
EXAMPLES = {"nightly": 20}.get(PROFILE, 1)
TARGET = 1e-5  # the accuracy asked of each integrator (tolerance or step size follow)
MAX_STEPS = {"nightly": 400}.get(PROFILE, 100)  # caps fixed steps (looser, derived bound)
REPLICAS = 48  # copies of one point for the statistical checks
REFERENCE_OPTIONS = {"rtol": 1e-10, "atol": 1e-10}


def _integrator_options(combo: Combination, span: float) -> tuple[dict, Tolerance]:
    spec = combo.integrator
    return accuracy_options(
        spec.capabilities,
        set(spec.options() or []) or None,
        target=TARGET,
        span=span,
        max_steps=MAX_STEPS,
    )


def _model(combo: Combination, field, t0: float, t1: float, *, seed: int, reference=False):
    if reference:
        trace = combo.trace.name if combo.trace.capabilities["stochastic"] else "exact"
        return flowkit.CNF(
            field,
            "dopri5",
            trace,
            "backprop",
            dim=field.dim,
            t0=t0,
            t1=t1,
            integrator_options=REFERENCE_OPTIONS,
            seed=seed,
        )
    options, _ = _integrator_options(combo, abs(t1 - t0))
    return flowkit.CNF(
        field,
        combo.integrator.name,
        combo.trace.name,
        combo.gradient.name,
        dim=field.dim,
        t0=t0,
        t1=t1,
        integrator_options=options,
        seed=seed,
    )


def _bound(combo: Combination, span: float, scale: Tensor) -> Tensor:
    """The solver bound on a log-density, scaled by its sensitivity ``1 + |z|^2``."""
    _, tol = _integrator_options(combo, span)
    return (tol.atol + 2 * REFERENCE_OPTIONS["rtol"] * 100) * 10 * (1 + scale)


def _field(combo: Combination, dim: int, seed: int, matrix=None):
    torch.manual_seed(seed)
    if combo.field.name == "linear" and matrix is not None:
        return suite_registry().create("vector_field", "linear", dim=dim, matrix=matrix)
    options = {"dim": dim}
    accepted = combo.field.options()
    if accepted is not None and "hidden" in accepted:
        options["hidden"] = (8,)
    return suite_registry().create("vector_field", combo.field.name, **options)


@st.composite
def problems(draw):
    dim = draw(fst.dims(3))
    batch = draw(fst.batch_sizes(4))
    matrix = draw(fst.well_conditioned_matrices(dim))
    x = draw(fst.vectors((batch, dim), bound=1.5))
    t0, t1 = draw(fst.time_spans(max_length=1.0, min_length=0.5))
    seed = draw(fst.seeds())
    return dim, matrix, x, t0, t1, seed


@pytest.mark.parametrize("combo", VALID, ids=lambda c: c.id)
@settings(max_examples=EXAMPLES)
@given(problem=problems())
def test_log_density(combo: Combination, problem) -> None:
    dim, matrix, x, t0, t1, seed = problem
    field = _field(combo, dim, seed, matrix)
    stochastic = combo.trace.capabilities["stochastic"]
    if combo.field.name == "linear":
        exact = affine_log_prob(x, matrix, t0=t0, t1=t1)
    else:
        exact = _model(combo, field, t0, t1, seed=seed, reference=True).log_prob(x).detach()
        if stochastic:  # the exact-trace reference
            exact = (
                flowkit.CNF(
                    field,
                    "dopri5",
                    "exact",
                    "backprop",
                    dim=dim,
                    t0=t0,
                    t1=t1,
                    integrator_options=REFERENCE_OPTIONS,
                )
                .log_prob(x)
                .detach()
            )
    model = _model(combo, field, t0, t1, seed=seed)
    span = abs(t1 - t0)
    if not stochastic:
        z, delta, _ = model.pull_back(x)
        got = (model.base.log_prob(z) - delta).detach()
        z = z.detach()
        bound = _bound(combo, span, z.pow(2).sum(-1))
        assert ((got - exact).abs() <= bound).all(), (got - exact, bound)
    else:
        point = x[:1].expand(REPLICAS, dim).contiguous()
        z, delta, _ = model.pull_back(point)
        got = (model.base.log_prob(z) - delta).detach()
        mean = got.mean()
        std_error = got.std() / math.sqrt(REPLICAS)
        z = z[:1].detach()
        bound = statistical_bound(float(std_error)) + float(_bound(combo, span, z.pow(2).sum()))
        assert abs(float(mean) - float(exact[0])) <= bound, (float(mean), float(exact[0]), bound)


@pytest.mark.parametrize("combo", VALID, ids=lambda c: c.id)
@settings(max_examples=EXAMPLES)
@given(problem=problems())
def test_gradients(combo: Combination, problem) -> None:
    dim, matrix, x, t0, t1, seed = problem
    field = _field(combo, dim, seed, matrix)
    params = [p for p in field.parameters() if p.requires_grad]
    model = _model(combo, field, t0, t1, seed=seed)
    z, delta, _ = model.pull_back(x)
    got = torch.autograd.grad((model.base.log_prob(z) - delta).sum(), params, allow_unused=True)
    got = [torch.zeros_like(p) if g is None else g for g, p in zip(got, params, strict=True)]
    if combo.field.name == "linear" and not combo.trace.capabilities["stochastic"]:
        want = torch.autograd.grad(
            affine_log_prob(x, field.matrix, field.bias, t0=t0, t1=t1).sum(),
            params,
            allow_unused=True,
        )
    else:
        reference = _model(combo, field, t0, t1, seed=seed, reference=True)
        want = torch.autograd.grad(reference.log_prob(x).sum(), params, allow_unused=True)
    want = [torch.zeros_like(p) if g is None else g for g, p in zip(want, params, strict=True)]
    scale = float(z.detach().pow(2).sum(-1).max())
    bound = float(_bound(combo, abs(t1 - t0), torch.tensor(scale))) * x.shape[0]
    for g, w in zip(got, want, strict=True):
        error = float((g - w).abs().max()) if g.numel() else 0.0
        assert error <= bound * (1 + float(w.abs().max() if w.numel() else 0)), (error, bound)


CONDITIONAL = [c for c in VALID if c.field.name == "linear"]


@st.composite
def conditional_problems(draw):
    dim, matrix, x, t0, t1, seed = draw(problems())
    width = draw(st.integers(min_value=1, max_value=2))
    context_matrix = draw(fst.vectors((dim, width), bound=1.0))
    context = draw(fst.vectors((x.shape[0], width), bound=1.5))
    return matrix, context_matrix, x, context, t0, t1, seed


@pytest.mark.parametrize("combo", CONDITIONAL, ids=lambda c: c.id)
@settings(max_examples=EXAMPLES)
@given(problem=conditional_problems())
def test_conditional_log_density_and_context_gradient(combo: Combination, problem) -> None:
    matrix, context_matrix, x, context, t0, t1, seed = problem
    field = conditional_affine_field(matrix, context_matrix)
    model = _model(combo, field, t0, t1, seed=seed)
    context = context.clone().requires_grad_(True)
    exact = conditional_affine_log_prob(x, context, matrix, context_matrix, t0=t0, t1=t1)
    (want,) = torch.autograd.grad(exact.sum(), context)
    span = abs(t1 - t0)
    if not combo.trace.capabilities["stochastic"]:
        z, delta, _ = model.pull_back(x, context=context)
        got = model.base.log_prob(z) - delta
        bound = _bound(combo, span, z.detach().pow(2).sum(-1))
        assert ((got.detach() - exact.detach()).abs() <= bound).all(), (got - exact, bound)
    else:  # copies of one point and its context, each row with its own probes
        rows = REPLICAS
        point = x[:1].expand(rows, -1).contiguous()
        z, delta, _ = model.pull_back(point, context=context[:1].expand(rows, -1))
        got = model.base.log_prob(z) - delta
        std_error = float(got.detach().std()) / math.sqrt(rows)
        bound = statistical_bound(std_error) + float(
            _bound(combo, span, z[0].detach().pow(2).sum())
        )
        assert abs(float(got.detach().mean()) - float(exact.detach()[0])) <= bound
        # the context enters z only, not the divergence: its gradient is deterministic
        got = got / rows
        want = want[:1]
    (grad,) = torch.autograd.grad(got.sum(), context)
    grad = grad[: want.shape[0]]
    scale = torch.tensor(float(z.detach().pow(2).sum(-1).max()))
    grad_bound = float(_bound(combo, span, scale)) * x.shape[0] * (1 + float(want.abs().max()))
    assert float((grad - want).abs().max()) <= grad_bound, (grad, want, grad_bound)


def test_every_removed_combination_really_raises() -> None:
    """The combinations removed at collection are exactly those the model refuses."""
    assert INVALID, "no incompatible combination exists to check"
    registry = suite_registry()
    for combo in INVALID:
        field_options = {"dim": 2}
        with pytest.raises(flowkit.IncompatibleComponentsError) as info:
            flowkit.CNF(
                registry.create("vector_field", combo.field.name, **field_options),
                combo.integrator.name,
                combo.trace.name,
                combo.gradient.name,
                dim=2,
            )
        for reason in combo.compatibility.reasons:
            assert reason in str(info.value)


def test_cover_includes_every_component() -> None:
    """The ``ci`` selection exercises every registered component of each kind."""
    registry = suite_registry()
    for kind, attr in (
        ("vector_field", "field"),
        ("integrator", "integrator"),
        ("trace_estimator", "trace"),
        ("gradient_strategy", "gradient"),
    ):
        used = {getattr(c, attr).name for c in VALID}
        assert used == set(registry.names(kind)), (kind, set(registry.names(kind)) - used)
