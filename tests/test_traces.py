"""Trace-estimator plugins: exactness, differentiability, unbiasedness, variance, errors."""

from __future__ import annotations

import warnings

import pytest
import torch
from flowkit.plugins.exact_trace_plan import (
    CHUNK_ROWS,
    FULL_PASS_ROWS,
    LOOP_MAX_DIM,
    MIN_CHUNK,
    exact_trace_plan,
)
from flowkit.plugins.trace_estimators import ExactTrace, ExactTraceLoop
from flowkit.plugins.vector_fields import LinearField
from hypothesis import given
from hypothesis import strategies as st
from registry_helpers import suite_registry

from flowkit.testing import strategies as fst
from flowkit.testing.tolerances import statistical_bound

REGISTRY = suite_registry()
TRACES = REGISTRY.names("trace_estimator")
CAPS = {n: REGISTRY.get("trace_estimator", n).capabilities for n in TRACES}
FIELD_EXACT = [
    n for n in TRACES if not CAPS[n]["stochastic"] and not CAPS[n]["requires_divergence"]
]
STOCHASTIC = [n for n in TRACES if CAPS[n]["stochastic"]]
CLOSED_FORM = [n for n in TRACES if CAPS[n]["requires_divergence"]]
FIELDS = REGISTRY.names("vector_field")
SMALL = {"mlp": {"hidden": (8, 8)}, "concatsquash": {"hidden": (8,)}, "hypernet": {"width": 4}}
T = torch.tensor(0.4)


def make_field(name: str, dim: int) -> torch.nn.Module:
    return REGISTRY.create("vector_field", name, dim=dim, **SMALL.get(name, {}))


def reference_trace(
    field: torch.nn.Module, x: torch.Tensor, create_graph: bool = False
) -> torch.Tensor:
    """The trace of each sample's Jacobian from the full autograd Jacobian of the batch sum."""
    jac = torch.autograd.functional.jacobian(
        lambda y: field(T, y).sum(0), x, create_graph=create_graph
    )  # (d, B, d): rows are independent
    return torch.diagonal(jac, dim1=0, dim2=2).sum(-1)


def params(field: torch.nn.Module) -> list[torch.Tensor]:
    return [p for p in field.parameters() if p.requires_grad]


def grads(out: torch.Tensor, inputs: list[torch.Tensor]) -> torch.Tensor:
    gs = torch.autograd.grad(out, inputs, allow_unused=True)
    pairs = zip(gs, inputs, strict=True)
    return torch.cat([(torch.zeros_like(i) if g is None else g).flatten() for g, i in pairs])


@pytest.mark.parametrize("field_name", FIELDS)
@pytest.mark.parametrize("trace", FIELD_EXACT)
@given(dim=fst.dims(), batch=fst.batch_sizes(), seed=fst.seeds())
def test_exact_estimators_match_jacobian_trace(
    field_name: str, trace: str, dim: int, batch: int, seed: int
) -> None:
    torch.manual_seed(seed)
    field = make_field(field_name, dim)
    x = torch.randn(batch, dim)
    f, div = REGISTRY.create("trace_estimator", trace).estimate(field, T, x)
    torch.testing.assert_close(f, field(T, x), atol=1e-14, rtol=1e-14)
    torch.testing.assert_close(div, reference_trace(field, x), atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("trace", FIELD_EXACT + CLOSED_FORM)
def test_divergence_is_differentiable(trace: str) -> None:
    """Second-order graphs: gradients of the divergence to x and the parameters are exact."""
    torch.manual_seed(0)
    field = make_field("mlp", 3)  # an mlp also knows its divergence in closed form
    x = torch.randn(4, 3, requires_grad=True)
    _, div = REGISTRY.create("trace_estimator", trace).estimate(field, T, x)
    expected = reference_trace(field, x, create_graph=True)
    inputs = [x, *params(field)]
    torch.testing.assert_close(
        grads(div.sum(), inputs), grads(expected.sum(), inputs), atol=1e-12, rtol=1e-10
    )


@pytest.mark.parametrize("trace", TRACES)
def test_no_grad_gives_values_without_history(trace: str) -> None:
    torch.manual_seed(1)
    field = LinearField(dim=3) if trace in CLOSED_FORM else make_field("mlp", 3)
    estimator = REGISTRY.create("trace_estimator", trace)
    x = torch.randn(4, 3)
    probes = estimator.sample_probes(x, torch.Generator().manual_seed(0))
    with_grad = estimator.estimate(field, T, x, probes)
    with torch.no_grad():
        f, div = estimator.estimate(field, T, x, probes)
    assert not f.requires_grad and not div.requires_grad
    torch.testing.assert_close(div, with_grad[1].detach(), atol=1e-14, rtol=0)


class _Square(torch.autograd.Function):
    """An old-style custom Function (no setup_context): torch.func refuses it."""

    @staticmethod
    def forward(ctx, x):  # type: ignore[override]
        ctx.save_for_backward(x)
        return x * x

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        (x,) = ctx.saved_tensors
        return 2 * x * grad


class _CustomFunctionField(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(3, 3)

    def forward(self, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return self.lin(_Square.apply(x))


def test_exact_falls_back_for_fields_torch_func_cannot_transform() -> None:
    torch.manual_seed(2)
    field = _CustomFunctionField()
    x = torch.randn(5, 3)
    with pytest.warns(RuntimeWarning, match="torch.func cannot transform _CustomFunctionField"):
        _, div = ExactTrace(method="vectorised").estimate(field, T, x)
    torch.testing.assert_close(div, reference_trace(field, x), atol=1e-12, rtol=1e-12)
    with warnings.catch_warnings():  # remembered: no second attempt, no second warning
        warnings.simplefilter("error")
        ExactTrace(method="vectorised").estimate(field, T, x)


@pytest.mark.parametrize("trace", CLOSED_FORM)
def test_closed_form_estimator_refuses_fields_without_divergence(trace: str) -> None:
    with pytest.raises(TypeError, match="no closed-form divergence"):
        REGISTRY.create("trace_estimator", trace).estimate(
            _CustomFunctionField(), T, torch.randn(2, 3)
        )


def _draws(
    trace: str, field: torch.nn.Module, x: torch.Tensor, n: int, seed: int, **options: object
) -> torch.Tensor:
    """``n`` independent estimates per sample of ``x``, shape ``(n, batch)``.

    Rows are independent, so replicating the batch ``n`` times gives ``n``
    independent probe draws per sample in one call.
    """
    estimator = REGISTRY.create("trace_estimator", trace, **options)
    big = x.repeat(n, 1)
    probes = estimator.sample_probes(big, torch.Generator().manual_seed(seed))
    with torch.no_grad():
        _, div = estimator.estimate(field, T, big, probes)
    return div.reshape(n, x.shape[0])


def _stochastic_options(trace: str) -> list[dict[str, object]]:
    options = REGISTRY.get("trace_estimator", trace).options() or []
    variants: list[dict[str, object]] = [{}]
    if "distribution" in options:
        variants = [{"distribution": d} for d in ("rademacher", "gaussian")]
    return variants


@pytest.mark.parametrize(
    "trace, options", [(t, o) for t in STOCHASTIC for o in _stochastic_options(t)], ids=str
)
def test_stochastic_estimators_are_unbiased(trace: str, options: dict[str, object]) -> None:
    torch.manual_seed(3)
    field = make_field("mlp", 6)
    x = torch.randn(3, 6)
    draws = _draws(trace, field, x, 4000, seed=11, **options)
    exact = reference_trace(field, x)
    std_error = draws.std(0) / draws.shape[0] ** 0.5
    assert bool((std_error > 0).all()), "no randomness: the check would be vacuous"
    for b in range(x.shape[0]):
        err = float((draws[:, b].mean() - exact[b]).abs())
        assert err <= statistical_bound(float(std_error[b])), (b, err, float(std_error[b]))


@pytest.mark.parametrize("seed", [0, 1])
def test_hutchpp_has_lower_variance_on_a_dominant_low_rank_jacobian(seed: int) -> None:
    """Jacobian = rank-2 part of norm ~10 plus a small full-rank part; 6 products each."""
    gen = torch.Generator().manual_seed(seed)
    dim = 16
    u, v = torch.randn(dim, 2, generator=gen), torch.randn(dim, 2, generator=gen)
    matrix = 5.0 * u @ v.T / dim**0.5 + 0.05 * torch.randn(dim, dim, generator=gen)
    field = LinearField(dim=dim, matrix=matrix)
    x = torch.randn(2, dim, generator=gen)
    hutch = _draws("hutchinson", field, x, 3000, seed=seed, n_probes=6)
    hpp = _draws("hutchpp", field, x, 3000, seed=seed, n_probes=6)
    exact = torch.trace(matrix)
    # Variances estimated from 3000 draws are within ~10% of the truth; the
    # claim is a reduction by far more than that (theory: the low-rank part's
    # contribution to the variance vanishes).
    assert bool((hpp.var(0) < 0.1 * hutch.var(0)).all()), (hpp.var(0), hutch.var(0))
    for draws in (hutch, hpp):
        err = (draws.mean(0) - exact).abs()
        assert bool((err <= 4 * draws.std(0) / draws.shape[0] ** 0.5).all())


def test_hutchpp_is_exact_when_the_sketch_spans_everything() -> None:
    torch.manual_seed(4)
    field = make_field("mlp", 2)
    x = torch.randn(5, 2)
    draws = _draws("hutchpp", field, x, 3, seed=0, n_probes=6)  # k = 2 = dim
    torch.testing.assert_close(
        draws, reference_trace(field, x).expand(3, 5), atol=1e-12, rtol=1e-12
    )


@pytest.mark.parametrize("trace", STOCHASTIC)
@given(seed=fst.seeds(), batch=fst.batch_sizes(), dim=fst.dims())
def test_probes_are_seeded_and_follow_x(trace: str, seed: int, batch: int, dim: int) -> None:
    estimator = REGISTRY.create("trace_estimator", trace)
    x = torch.randn(batch, dim, dtype=torch.float32)
    a = estimator.sample_probes(x, torch.Generator().manual_seed(seed))
    b = estimator.sample_probes(x, torch.Generator().manual_seed(seed))
    assert a.dtype == x.dtype and a.device == x.device and a.shape[1:] == x.shape
    assert torch.equal(a, b)


@pytest.mark.parametrize("trace", STOCHASTIC)
def test_stochastic_estimators_need_their_probes(trace: str) -> None:
    estimator = REGISTRY.create("trace_estimator", trace)
    field, x = make_field("mlp", 2), torch.randn(3, 2)
    with pytest.raises(ValueError, match="sample_probes"):
        estimator.estimate(field, T, x, None)
    probes = estimator.sample_probes(torch.randn(4, 2))
    with pytest.raises(ValueError, match="do not fit a batch of shape"):
        estimator.estimate(field, T, x, probes)


@pytest.mark.parametrize("trace", TRACES)
def test_deterministic_estimators_draw_no_probes(trace: str) -> None:
    estimator = REGISTRY.create("trace_estimator", trace)
    assert (estimator.sample_probes(torch.randn(2, 2)) is None) == (not CAPS[trace]["stochastic"])


@pytest.mark.parametrize(
    "trace, options, match",
    [
        ("hutchinson", {"n_probes": 0}, "n_probes must be an integer >= 1"),
        ("hutchinson", {"n_probes": 1.5}, "n_probes must be an integer >= 1"),
        ("hutchinson", {"distribution": "uniform"}, "Unknown probe distribution 'uniform'"),
        ("hutchpp", {"n_probes": 2}, "n_probes must be an integer >= 3"),
        ("exact", {"chunk_size": 0}, "chunk_size must be an integer >= 1"),
        ("exact", {"method": "vmap"}, "Unknown method 'vmap' of the 'exact' trace"),
        ("exact", {"method": "loop", "chunk_size": 2}, "method='loop' does not use"),
    ],
)
def test_option_errors(trace: str, options: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        REGISTRY.create("trace_estimator", trace, **options)


@pytest.mark.parametrize("trace", TRACES)
def test_unknown_option_is_type_error(trace: str) -> None:
    with pytest.raises(TypeError, match="Unknown option"):
        REGISTRY.create("trace_estimator", trace, bogus=1)


@given(chunk=st.integers(1, 5))
def test_exact_chunking_gives_the_same_trace(chunk: int) -> None:
    torch.manual_seed(chunk)
    field = make_field("mlp", 5)
    x = torch.randn(3, 5)
    _, div = ExactTrace(chunk_size=chunk).estimate(field, T, x)
    torch.testing.assert_close(div, reference_trace(field, x), atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("method", ExactTrace.METHODS)
@given(dim=st.integers(1, 6), batch=st.integers(1, 700), seed=fst.seeds())
def test_exact_gives_the_same_trace_by_every_method(
    method: str, dim: int, batch: int, seed: int
) -> None:
    """Loop, one vectorised pass, or the chunks ``auto`` picks: the same trace and gradient."""
    torch.manual_seed(seed)
    field = make_field("mlp", dim)
    x = torch.randn(batch, dim)
    f, div = ExactTrace(method=method).estimate(field, T, x)
    f_ref, div_ref = ExactTraceLoop().estimate(field, T, x)
    torch.testing.assert_close(f, f_ref, atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(div, div_ref, atol=1e-12, rtol=1e-12)
    params = list(field.parameters())
    got = torch.autograd.grad(div.sum(), params, allow_unused=True, materialize_grads=True)
    want = torch.autograd.grad(div_ref.sum(), params, allow_unused=True, materialize_grads=True)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, atol=1e-12, rtol=1e-12)


def test_exact_plan_follows_the_documented_rule() -> None:
    """Loop at dim <= 2 and for large CPU batches, one pass while small, chunks of
    CHUNK_ROWS // batch basis vectors in between, one pass on accelerators; an
    explicit chunk_size or method wins."""
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert exact_trace_plan(100, LOOP_MAX_DIM, cpu) is None
    assert exact_trace_plan(100, LOOP_MAX_DIM + 1, cpu) == LOOP_MAX_DIM + 1
    assert exact_trace_plan(FULL_PASS_ROWS // 8, 8, cpu) == 8
    assert exact_trace_plan(100, 64, cpu) == CHUNK_ROWS // 100
    assert exact_trace_plan(CHUNK_ROWS // MIN_CHUNK, 64, cpu) == MIN_CHUNK
    assert exact_trace_plan(CHUNK_ROWS // MIN_CHUNK + 1, 64, cpu) is None
    assert exact_trace_plan(4096, 2, cuda) == 2 and exact_trace_plan(4096, 128, cuda) == 128
    x = torch.zeros(100, 64)
    assert ExactTrace().plan(x) == exact_trace_plan(100, 64, cpu)
    assert ExactTrace(chunk_size=3).plan(x) == 3 and ExactTrace(chunk_size=99).plan(x) == 64
    assert ExactTrace(method="vectorised").plan(x) == 64
    assert ExactTrace(method="loop").plan(x) is None
