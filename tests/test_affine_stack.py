"""The fused value and divergence of affine stacks (``plugins/vector_fields/affine_stack.py``).

Checked in float64 against the autograd computation of the same stack (the
value) and against ``layered_divergence`` (the trace), with its written-out
first derivatives and its recomputed second derivatives against finite
differences (``gradcheck``, ``gradgradcheck``), for every activation it
serves, plain and gated (FFJORD) layers, one to three hidden layers, ``x``
anywhere in the first layer's input, and the time. Also: the no-grad path
gives the same numbers, the fields fall back to autograd where the fused pass
does not apply, and bad stacks are refused.
"""

from __future__ import annotations

import itertools

import pytest
import torch
from flowkit.plugins.vector_fields import ConcatSquashField, MLPField
from flowkit.plugins.vector_fields.affine_stack import (
    FUSED_ACTIVATIONS,
    affine_stack_divergence,
    fused_divergence_applies,
)
from flowkit.plugins.vector_fields.layered_trace import layered_divergence
from torch import Tensor

DTYPE = torch.float64


def _reference(
    h0: Tensor, xs: slice, layers: list[tuple[Tensor, ...]], activation: str, t: Tensor
) -> tuple[Tensor, Tensor]:
    """The same stack with plain autograd operations and ``layered_divergence``."""
    value, slope_of, _ = FUSED_ACTIVATIONS[activation]
    weights, biases = [], []
    for layer in layers:
        if len(layer) == 2:
            w, a = layer
        else:
            w0, b, gw, gb, sw = layer
            g = torch.sigmoid(gw.view(-1) * t + gb)
            w, a = g.unsqueeze(1) * w0, g * b + sw.view(-1) * t
        weights.append(w)
        biases.append(a)
    v, slopes = h0, []
    for w, a in zip(weights[:-1], biases[:-1], strict=True):
        z = v @ w.T + a
        v = value(z)
        slopes.append(slope_of(z, v, torch.ones((), dtype=z.dtype)))
    f = v @ weights[-1].T + biases[-1]
    return f, layered_divergence([weights[0][:, xs], *weights[1:]], slopes)


def _stack(
    dim: int, offset: int, extra: int, hidden: int, depth: int, gated: bool
) -> tuple[Tensor, list[tuple[Tensor, ...]]]:
    widths = [offset + dim + extra, *([hidden] * depth), dim]

    def new(*shape: int) -> Tensor:
        return torch.randn(*shape, dtype=DTYPE, requires_grad=True)

    layers = []
    for n_in, n_out in itertools.pairwise(widths):
        if gated:
            layers.append((new(n_out, n_in), new(n_out), new(n_out, 1), new(n_out), new(n_out, 1)))
        else:
            layers.append((new(n_out, n_in), new(n_out)))
    return new(4, widths[0]), layers


@pytest.mark.parametrize("activation", sorted(FUSED_ACTIVATIONS))
@pytest.mark.parametrize("depth", [1, 2, 3])
@pytest.mark.parametrize("gated", [False, True], ids=["plain", "gated"])
def test_value_divergence_and_derivatives_are_exact(
    activation: str, depth: int, gated: bool
) -> None:
    torch.manual_seed(depth + 10 * gated)
    dim, offset, extra = 3, 1, 2  # a time-like column before x, a context after it
    h0, layers = _stack(dim, offset, extra, hidden=5, depth=depth, gated=gated)
    t = torch.tensor(0.37, dtype=DTYPE, requires_grad=True)
    sizes = [len(layer) for layer in layers]

    def fused(h: Tensor, tt: Tensor, *flat: Tensor) -> tuple[Tensor, Tensor]:
        grouped, i = [], 0
        for n in sizes:
            grouped.append(flat[i : i + n])
            i += n
        return affine_stack_divergence(h, dim, grouped, activation, tt, x_offset=offset)

    flat = [x for layer in layers for x in layer]
    f, div = fused(h0, t, *flat)
    f_ref, div_ref = _reference(h0, slice(offset, offset + dim), layers, activation, t)
    torch.testing.assert_close(f, f_ref, rtol=1e-13, atol=1e-13)
    torch.testing.assert_close(div, div_ref, rtol=1e-12, atol=1e-12)
    with torch.no_grad():
        f_ng, div_ng = fused(h0, t, *flat)
    assert torch.equal(f_ng, f) and torch.equal(div_ng, div)
    assert torch.autograd.gradcheck(fused, (h0, t, *flat))
    if activation != "relu":  # relu's second derivative is 0 except at a kink
        assert torch.autograd.gradgradcheck(fused, (h0, t, *flat))


def test_first_order_backward_equals_autograd_on_the_reference() -> None:
    """The written-out backward against autograd through the reference, many cotangents."""
    torch.manual_seed(3)
    h0, layers = _stack(2, 0, 0, hidden=16, depth=3, gated=True)
    t = torch.tensor(-0.8, dtype=DTYPE, requires_grad=True)
    inputs = [h0, t, *(x for layer in layers for x in layer)]
    f, div = affine_stack_divergence(h0, 2, layers, "tanh", t)
    f_ref, div_ref = _reference(h0, slice(0, 2), layers, "tanh", t)
    for _ in range(3):
        gf, gdiv = torch.randn_like(f), torch.randn_like(div)
        got = torch.autograd.grad((f, div), inputs, (gf, gdiv), retain_graph=True)
        want = torch.autograd.grad((f_ref, div_ref), inputs, (gf, gdiv), retain_graph=True)
        for a, b in zip(got, want, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("field_class", [MLPField, ConcatSquashField])
def test_fields_use_the_fused_pass_and_agree_with_the_unfused_one(
    field_class: type, monkeypatch: pytest.MonkeyPatch
) -> None:
    torch.manual_seed(0)
    field = field_class(dim=3, hidden=(8, 8), context_dim=2).double()
    x = torch.randn(6, 3, dtype=DTYPE, requires_grad=True)
    context = torch.randn(6, 2, dtype=DTYPE)
    t = torch.tensor(0.4, dtype=DTYPE)
    calls = []
    module = __import__(field_class.__module__, fromlist=["affine_stack_divergence"])
    fused = module.affine_stack_divergence
    monkeypatch.setattr(
        module, "affine_stack_divergence", lambda *a, **k: calls.append(1) or fused(*a, **k)
    )
    f, div = field.value_and_divergence(t, x, context)
    assert calls, "the fused pass was not used"
    params = [x, *field.parameters()]
    grads = torch.autograd.grad(f.square().sum() + div.sum(), params)
    field.fused_divergence = False  # the same closed form, recorded by autograd
    calls.clear()
    f_ref, div_ref = field.value_and_divergence(t, x, context)
    assert not calls
    grads_ref = torch.autograd.grad(f_ref.square().sum() + div_ref.sum(), params)
    torch.testing.assert_close(f, f_ref, rtol=1e-13, atol=1e-13)
    torch.testing.assert_close(div, div_ref, rtol=1e-12, atol=1e-12)
    for a, b in zip(grads, grads_ref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-11, atol=1e-11)


def test_the_fused_pass_steps_aside_where_it_does_not_apply() -> None:
    assert fused_divergence_applies("tanh", 64, 2)
    assert not fused_divergence_applies("gelu", 64, 2)  # no second derivative written out
    assert not fused_divergence_applies("tanh", 4, 6)  # narrower than dim: the rotated product
    # torch.func transforms do not see through a custom backward: autograd is used instead
    torch.manual_seed(1)
    field = MLPField(dim=2, hidden=(8, 8)).double()
    x, t = torch.randn(5, 2, dtype=DTYPE), torch.tensor(0.2, dtype=DTYPE)

    def divergence_of_one(y: Tensor) -> Tensor:
        assert not fused_divergence_applies("tanh", 8, 2)
        return field.divergence(t, y[None])[0]

    grads = torch.func.vmap(torch.func.grad(divergence_of_one))(x)
    xg = x.clone().requires_grad_(True)
    (expected,) = torch.autograd.grad(field.divergence(t, xg).sum(), xg)
    torch.testing.assert_close(grads, expected, rtol=1e-12, atol=1e-12)


def test_bad_stacks_are_refused() -> None:
    w, a = torch.randn(2, 2), torch.randn(2)
    with pytest.raises(ValueError, match="at least two layers"):
        affine_stack_divergence(torch.randn(3, 2), 2, [(w, a)], "tanh")
    with pytest.raises(ValueError, match=r"\(W, a\) or gated"):
        affine_stack_divergence(torch.randn(3, 2), 2, [(w, a), (w, a, w)], "tanh")
    gated = (w, a, torch.randn(2, 1), a, torch.randn(2, 1))
    with pytest.raises(ValueError, match="need the time t"):
        affine_stack_divergence(torch.randn(3, 2), 2, [gated, (w, a)], "tanh")
