"""Closed-form divergences of the layered fields (``mlp``, ``concatsquash``, ``hypernet``).

Each is checked against the exact trace (one vector-Jacobian product per
dimension) in float64 over random weights, times, inputs, widths, activations
and contexts; its gradients (the second derivatives of the field that training
with ``analytic`` uses) against the exact trace's; and end to end, training
gradients through a CNF with ``analytic`` against ``exact`` with backprop and
the adjoint.
"""

from __future__ import annotations

import pytest
import torch
from flowkit.plugins.trace_estimators import ExactTraceLoop
from flowkit.plugins.vector_fields import ACTIVATIONS, ConcatSquashField, HyperNetField, MLPField
from flowkit.plugins.vector_fields.layered_trace import layered_divergence
from hypothesis import given
from hypothesis import strategies as st
from torch import Tensor, nn

import flowkit
from flowkit.testing import strategies as fst
from flowkit.testing.conformance import check_vector_field
from flowkit.testing.tolerances import roundoff

LAYERED = ("mlp", "concatsquash", "hypernet")
TOL = roundoff(torch.float64)


def build(name: str, dim: int, widths: list[int], activation: str, context_dim: int) -> nn.Module:
    """A layered field of random (default-initialised) weights, in float64."""
    if name == "mlp":
        field = MLPField(dim=dim, hidden=widths, activation=activation, context_dim=context_dim)
    elif name == "concatsquash":
        field = ConcatSquashField(
            dim=dim, hidden=widths, activation=activation, context_dim=context_dim
        )
    else:
        field = HyperNetField(
            dim=dim,
            width=widths[0],
            hyper_hidden=widths[1:] or [4],
            activation=activation,
            context_dim=context_dim,
        )
    return field.to(torch.float64)


def exact_trace(
    field: nn.Module, t: Tensor, x: Tensor, context: Tensor | None
) -> tuple[Tensor, Tensor]:
    """``(f, tr(df/dx))`` with one vector-Jacobian product per dimension."""
    bound = field if context is None else flowkit.dynamics.BoundContext(field, context)
    return ExactTraceLoop().estimate(bound, t, x)


@pytest.mark.parametrize("name", LAYERED)
@given(
    dim=st.integers(1, 6),
    widths=st.lists(st.integers(1, 8), min_size=1, max_size=3),
    activation=st.sampled_from(sorted(ACTIVATIONS)),
    context_dim=st.integers(0, 2),
    batch=st.integers(1, 5),
    t=st.floats(-2.0, 2.0),
    seed=fst.seeds(),
)
def test_closed_form_equals_exact_trace(
    name: str,
    dim: int,
    widths: list[int],
    activation: str,
    context_dim: int,
    batch: int,
    t: float,
    seed: int,
) -> None:
    """Narrow and wide first layers (both accumulation orders), every activation, contexts."""
    torch.manual_seed(seed)
    field = build(name, dim, widths, activation, context_dim)
    x = torch.randn(batch, dim, dtype=torch.float64)
    context = torch.randn(batch, context_dim, dtype=torch.float64) if context_dim else None
    tt = torch.tensor(t, dtype=torch.float64)
    f, div = field.value_and_divergence(tt, x, context)
    f_ref, div_ref = exact_trace(field, tt, x, context)
    TOL.assert_close(f, f_ref, "value")
    TOL.assert_close(div, div_ref, "divergence")
    TOL.assert_close(field.divergence(tt, x, context), div_ref, "divergence()")


def grad(value: Tensor, inputs: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
    """Gradients, zero for inputs the value does not depend on (e.g. output biases)."""
    return torch.autograd.grad(value, inputs, allow_unused=True, materialize_grads=True)


@pytest.mark.parametrize("name", LAYERED)
@pytest.mark.parametrize("context_dim", [0, 2])
def test_gradients_of_the_divergence_equal_the_exact_traces(name: str, context_dim: int) -> None:
    """d tr(df/dx) / d(x, t, parameters): what training with ``analytic`` backpropagates."""
    torch.manual_seed(3)
    field = build(name, 3, [5, 4], "softplus", context_dim)
    x = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    t = torch.tensor(0.3, dtype=torch.float64, requires_grad=True)
    context = torch.randn(4, context_dim, dtype=torch.float64) if context_dim else None
    weights = torch.randn(4, dtype=torch.float64)
    inputs = (x, t, *field.parameters())
    got = grad((field.divergence(t, x, context) * weights).sum(), inputs)
    want = grad((exact_trace(field, t, x, context)[1] * weights).sum(), inputs)
    for g, w in zip(got, want, strict=True):
        TOL.assert_close(g, w, "gradient of the divergence")


@pytest.mark.parametrize("name", ["concatsquash", "hypernet"])
@pytest.mark.parametrize("context_dim", [0, 2])
def test_fields_pass_the_conformance_kit_with_their_divergence(name: str, context_dim: int) -> None:
    field = build(name, 3, [6, 5], "tanh", context_dim)
    checked = check_vector_field(field, dim=3)
    assert {"rows independent", "divergence", "differentiable"} <= set(checked)
    assert ("rows independent given context" in checked) == (context_dim > 0)


def test_batch_chunks_give_the_batch_wide_divergence() -> None:
    torch.manual_seed(1)
    field = build("concatsquash", 3, [6, 6], "tanh", 1)
    x, context = torch.randn(9, 3), torch.randn(9, 1)
    t = torch.tensor(0.2)
    whole = field.value_and_divergence(t, x, context)
    field.divergence_chunk_elements = 2 * 3 * 6  # two rows per chunk: five chunks
    chunked = field.value_and_divergence(t, x, context)
    for a, b in zip(chunked, whole, strict=True):
        TOL.assert_close(a, b, "chunked")


@pytest.mark.parametrize("name", ["concatsquash", "hypernet"])
@pytest.mark.parametrize("gradient", ["backprop", "adjoint"])
def test_training_gradients_with_analytic_equal_those_with_exact(name: str, gradient: str) -> None:
    """A log-likelihood step through the CNF (rk4, fixed steps): the same gradients."""
    grads = {}
    for trace in ("analytic", "exact"):
        torch.manual_seed(5)
        field = build(name, 2, [6, 6], "tanh", 0)
        model = flowkit.CNF(
            field, "rk4", trace, gradient, dim=2, integrator_options={"step_size": 0.25}
        )
        x = torch.randn(6, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
        loss = -model.log_prob(x).mean()
        grads[trace] = torch.autograd.grad(loss, list(model.parameters()))
    for a, b in zip(grads["analytic"], grads["exact"], strict=True):
        TOL.assert_close(a, b, "parameter gradient")


def test_conditional_training_through_bound_context_uses_the_closed_form() -> None:
    torch.manual_seed(2)
    field = build("hypernet", 2, [4, 4], "tanh", 1)
    model = flowkit.CNF(
        field, "rk4", "analytic", "backprop", dim=2, integrator_options={"step_size": 0.5}
    )
    x, context = torch.randn(5, 2), torch.randn(5, 1)
    exact = flowkit.CNF(
        field, "rk4", "exact", "backprop", dim=2, integrator_options={"step_size": 0.5}
    )
    TOL.assert_close(model.log_prob(x, context=context), exact.log_prob(x, context=context))


@given(
    dim=st.integers(1, 5),
    widths=st.lists(st.integers(1, 6), min_size=1, max_size=4),
    batch=st.integers(1, 4),
    per_sample=st.lists(st.booleans(), min_size=5, max_size=5),
    seed=fst.seeds(),
)
def test_layered_divergence_is_the_trace_of_the_product(
    dim: int, widths: list[int], batch: int, per_sample: list[bool], seed: int
) -> None:
    """Shared and per-sample weights, narrow and wide first layers, 0 to 3 hidden layers."""
    gen = torch.Generator().manual_seed(seed)
    sizes = [dim, *widths, dim]
    weights = [
        torch.randn(*((batch,) if per_sample[k] else ()), sizes[k + 1], sizes[k], generator=gen)
        for k in range(len(sizes) - 1)
    ]
    slopes = [torch.rand(batch, w, generator=gen) for w in widths]
    jac = weights[0].expand(batch, -1, -1)
    for w, s in zip(weights[1:], slopes, strict=True):
        jac = w @ (s.unsqueeze(-1) * jac)
    want = torch.diagonal(jac, dim1=1, dim2=2).sum(-1)
    TOL.assert_close(layered_divergence(weights, slopes), want, "trace")


def test_layered_divergence_needs_one_weight_more_than_slopes() -> None:
    with pytest.raises(ValueError, match="one weight more than slopes"):
        layered_divergence([torch.ones(2, 2)], [torch.ones(1, 2)])


@pytest.mark.parametrize("name", ["concatsquash", "hypernet"])
def test_divergence_checks_its_context(name: str) -> None:
    field = build(name, 2, [4], "tanh", 2)
    x = torch.randn(3, 2)
    with pytest.raises(ValueError, match="is conditional"):
        field.divergence(torch.tensor(0.0), x)
    with pytest.raises(ValueError, match=r"expects a context of shape \(3, 2\)"):
        field.divergence(torch.tensor(0.0), x, context=torch.randn(3, 1))
