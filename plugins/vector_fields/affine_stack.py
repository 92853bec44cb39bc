"""The value and exact divergence of a stack of affine layers, with a hand-written backward.

For a fixed time (and context) the built-in layered fields are a stack

    z_k = v_k W_k^T + a_k,   v_(k+1) = act(z_k)   (k < L),   f = z_L,

of affine layers and one elementwise activation, with ``v_0 = [x, constant
columns]``. :func:`affine_stack_divergence` computes ``f`` and ``tr(df/dx)``
in one pass, pushing the Jacobian's ``dim`` columns through the layers
(forward accumulation, as :func:`~flowkit.plugins.vector_fields.layered_trace.layered_divergence`),
and differentiates them with a backward pass written out by hand: no autograd
graph is recorded for the batch-sized work, so a training step pays a few
dozen tensor operations per evaluation instead of the several hundred autograd
nodes of the same computation (FFJORD's toy configuration, batch 100: most of
a step is per-operation overhead; ``benchmarks/divergence.py``).

Second-order gradients stay exact: when the backward pass itself is
differentiated (``create_graph=True``), it recomputes the forward pass with
autograd from the saved inputs and applies the same formulas to differentiable
tensors.

The backward formulas, with ``P_k = M_k W_k^T`` and ``M_(k+1) = P_k * s_k``
(``M_k``: the Jacobian columns before layer ``k``, ``s_k = act'(z_k)``), and
``div = sum_ij M_L[i, :, j] W_L[i, j]``: from the cotangents ``gf, gdiv``,
``gW_L = gf^T v_L + gdiv . M_L``, ``gM_L = gdiv (x) W_L``, then per layer
``gP = gM * s``, ``gs = sum_i gM[i] * P[i]``, ``gz = gv * s + gs * act''(z_k)``,
``gW_k = gz^T v_k + gP^T M_k``, ``ga_k = sum gz``, ``gv_k = gz W_k``,
``gM_k = gP W_k``; the first layer's Jacobian columns are its weights' ``x``
columns.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

__all__ = ["FUSED_ACTIVATIONS", "affine_stack_divergence", "fused_divergence_applies"]

Activation = tuple[
    Callable[[Tensor], Tensor],  # the activation
    Callable[[Tensor, Tensor, Tensor], Tensor],  # its slope from (pre-activation, value, 1)
    # the pre-activation's cotangent g_v * act' + g_s * act'' from (g_v, g_s, value, slope)
    Callable[[Tensor, Tensor, Tensor, Tensor], Tensor],
]


FUSED_ACTIVATIONS: dict[str, Activation] = {
    # tanh'' = -2 v s
    "tanh": (
        torch.tanh,
        lambda z, v, one: torch.addcmul(one, v, v, value=-1),
        lambda gv, gs, v, s: s * torch.addcmul(gv, gs, v, value=-2),
    ),
    # sigmoid'' = s (1 - 2 v)
    "sigmoid": (
        torch.sigmoid,
        lambda z, v, one: torch.addcmul(v, v, v, value=-1),
        lambda gv, gs, v, s: s * torch.addcmul(gv + gs, gs, v, value=-2),
    ),
    # softplus' = s = sigmoid(z), softplus'' = s (1 - s)
    "softplus": (
        torch.nn.functional.softplus,
        lambda z, v, one: torch.sigmoid(z),
        lambda gv, gs, v, s: s * torch.addcmul(gv + gs, gs, s, value=-1),
    ),
    # relu'' = 0 (almost everywhere)
    "relu": (
        torch.relu,
        lambda z, v, one: (z > 0).to(z.dtype),
        lambda gv, gs, v, s: gv * s,
    ),
}
"""Activations (by name) with the value, slope and second derivative the fused pass needs."""


_transforms_active: Callable[[], bool] = getattr(
    torch._C, "_are_functorch_transforms_active", lambda: False
)  # whether a torch.func transform (vmap, grad, jacrev, ...) is running


def fused_divergence_applies(activation: str, first_width: int, dim: int) -> bool:
    """Whether :func:`affine_stack_divergence` serves a stack of weights shared by the batch.

    It needs an activation of :data:`FUSED_ACTIVATIONS`, a first layer at
    least ``dim`` wide (narrower ones are cheaper by the rotated product of
    ``layered_divergence``) and no active ``torch.func`` transform (``vmap``,
    ``grad``: they do not see through a custom backward).
    """
    return activation in FUSED_ACTIVATIONS and first_width >= dim and not _transforms_active()


def _forward(
    h0: Tensor,
    xs: slice,
    weights: Sequence[Tensor],
    biases: Sequence[Tensor],
    act: Activation,
) -> tuple[Tensor, Tensor, list[Tensor]]:
    """``(f, div, saved)``: ``saved`` is ``[v_1, s_0]``, then ``[M, P, v, s]`` per middle
    layer, then the last ``M``; the Jacobian columns ``M`` are ``(dim, batch, n)``."""
    value, slope_of, _ = act
    dim = xs.stop - xs.start
    one = h0.new_ones(())
    last = len(weights) - 1
    z = torch.addmm(biases[0], h0, weights[0].t())
    v = value(z)
    s = slope_of(z, v, one)
    saved = [v, s]
    if last == 1:  # one hidden layer: tr(W_1 diag(s) W_0x) = sum_j s_j c_j
        c = (weights[0][:, xs] * weights[1].t()).sum(1)
        return torch.addmm(biases[1], v, weights[1].t()), s @ c, saved
    batch = h0.shape[0]
    m = weights[0][:, xs].t().contiguous().unsqueeze(1) * s  # (dim, B, n_1)
    for k in range(1, last):
        w = weights[k]
        z = torch.addmm(biases[k], v, w.t())
        p = (m.view(-1, m.shape[-1]) @ w.t()).view(dim, batch, -1)
        v = value(z)
        s = slope_of(z, v, one)
        saved += [m, p, v, s]
        m = p * s
    w = weights[last]
    saved.append(m)
    return torch.addmm(biases[last], v, w.t()), (m * w.unsqueeze(1)).sum((0, 2)), saved


def _backward(
    gf: Tensor,
    gdiv: Tensor,
    h0: Tensor,
    xs: slice,
    weights: Sequence[Tensor],
    saved: list[Tensor],
    act: Activation,
) -> tuple[Tensor, list[Tensor], list[Tensor]]:
    """``(g h0, [g W_k], [g a_k])`` for the cotangents ``gf`` and ``gdiv``."""
    dim = xs.stop - xs.start
    pre_cotangent = act[2]
    last = len(weights) - 1
    gws: list[Tensor] = [gf] * (last + 1)
    gas: list[Tensor] = [gf] * (last + 1)
    gas[last] = gf.sum(0)
    w = weights[last]
    gv = gf @ w
    if last == 1:
        v, s = saved
        c = (weights[0][:, xs] * w.t()).sum(1)
        gc = gdiv @ s  # (n_1,)
        gws[1] = torch.addcmul(gf.t() @ v, weights[0][:, xs].t(), gc)
        gz = pre_cotangent(gv, gdiv.unsqueeze(1) * c, v, s)
        gws[0] = gz.t() @ h0
        gws[0][:, xs] += gc.unsqueeze(1) * w.t()
        gas[0] = gz.sum(0)
        return gz @ weights[0], gws, gas
    batch = h0.shape[0]
    m = saved[-1]
    gws[last] = torch.addmm(torch.matmul(gdiv, m), gf.t(), saved[-3])
    gm = w.unsqueeze(1) * gdiv.view(1, -1, 1)  # (dim, B, n_L)
    for k in range(last - 1, 0, -1):
        m, p, v, s = saved[4 * k - 2 : 4 * k + 2]
        v_in = saved[4 * k - 4]  # v_1 at 0, v_2 at 4, ...
        w = weights[k]
        n_out, n_in = w.shape
        gp = gm * s
        gz = pre_cotangent(gv, (gm * p).sum(0), v, s)
        gws[k] = torch.addmm(gz.t() @ v_in, gp.view(-1, n_out).t(), m.view(-1, n_in))
        gas[k] = gz.sum(0)
        gv = gz @ w
        gm = (gp.view(-1, n_out) @ w).view(dim, batch, n_in)
    v, s = saved[:2]
    columns = weights[0][:, xs].t()  # (dim, n_1)
    gz = pre_cotangent(gv, (gm * columns.unsqueeze(1)).sum(0), v, s)
    gws[0] = gz.t() @ h0
    gws[0][:, xs] += (gm * s).sum(1).t()
    gas[0] = gz.sum(0)
    return gz @ weights[0], gws, gas


def _gate(t: Tensor, layer: Sequence[Tensor]) -> tuple[Tensor, Tensor, Tensor]:
    """``(A, a, g)`` of a layer ``(W, b)`` (``g`` empty) or gated ``(W, b, G, c, U)``:
    ``g = sigmoid(G t + c)``, ``A = diag(g) W``, ``a = g * b + U t``."""
    if len(layer) == 2:
        return layer[0], layer[1], layer[0].new_empty(0)
    w, b, gate_w, gate_b, shift_w = layer
    g = torch.sigmoid(torch.addcmul(gate_b, gate_w.view(-1), t))
    return w * g.unsqueeze(1), torch.addcmul(shift_w.view(-1) * t, g, b), g


def _gate_backward(
    t: Tensor,
    layer: Sequence[Tensor],
    g: Tensor,
    ga_matrix: Tensor,
    ga_bias: Tensor,
    with_time: bool,
) -> tuple[list[Tensor], Tensor | None]:
    """Cotangents of a layer's tensors from those of ``(A, a)``; and its part of ``t``'s
    (``None`` unless ``with_time``)."""
    if len(layer) == 2:
        return [ga_matrix, ga_bias], None
    w, b, gate_w, _, shift_w = layer
    gg = torch.addcmul((ga_matrix * w).sum(1), ga_bias, b)
    gpre = gg * torch.addcmul(g, g, g, value=-1)  # sigmoid' = g - g^2
    grads = [
        ga_matrix * g.unsqueeze(1),
        ga_bias * g,
        (gpre * t).view_as(gate_w),
        gpre,
        (ga_bias * t).view_as(shift_w),
    ]
    if not with_time:
        return grads, None
    return grads, gpre @ gate_w.view(-1) + ga_bias @ shift_w.view(-1)


def _layers(sizes: Sequence[int], tensors: Sequence[Tensor]) -> list[Sequence[Tensor]]:
    out, i = [], 0
    for n in sizes:
        out.append(tensors[i : i + n])
        i += n
    return out


def _gated_forward(
    h0: Tensor, t: Tensor, xs: slice, layers: Sequence[Sequence[Tensor]], act: Activation
) -> tuple[Tensor, Tensor, list[Tensor], list[Tensor], list[Tensor]]:
    """:func:`_forward` after :func:`_gate`: ``(f, div, saved, weights, gates)``."""
    gated = [_gate(t, layer) for layer in layers]
    weights, biases, gates = ([g[i] for g in gated] for i in range(3))
    f, div, saved = _forward(h0, xs, weights, biases, act)
    return f, div, saved, weights, gates


class _AffineStackDivergence(torch.autograd.Function):
    """``(f, div)`` of an affine stack; arguments ``(h0, t, xs, activation, sizes, *layers)``."""

    @staticmethod
    def forward(
        ctx: Any,
        h0: Tensor,
        t: Tensor,
        xs: slice,
        activation: str,
        sizes: tuple[int, ...],
        *tensors: Tensor,
    ) -> Any:
        act = FUSED_ACTIVATIONS[activation]
        f, div, saved, weights, gates = _gated_forward(h0, t, xs, _layers(sizes, tensors), act)
        ctx.xs, ctx.act, ctx.sizes = xs, act, sizes
        ctx.save_for_backward(h0, t, *tensors)
        ctx.intermediates = (weights, gates, saved)
        return f, div

    @staticmethod
    def backward(ctx: Any, gf: Tensor | None, gdiv: Tensor | None) -> Any:
        h0, t, *tensors = ctx.saved_tensors
        xs, act = ctx.xs, ctx.act
        layers = _layers(ctx.sizes, tensors)
        weights, gates, saved = ctx.intermediates
        if torch.is_grad_enabled():  # a differentiable backward: recompute with autograd
            _, _, saved, weights, gates = _gated_forward(h0, t, xs, layers, act)
        f_like = h0.new_zeros(h0.shape[0], weights[-1].shape[0]) if gf is None else gf
        div_like = h0.new_zeros(h0.shape[0]) if gdiv is None else gdiv
        gh0, gws, gas = _backward(f_like, div_like, h0, xs, weights, saved, act)
        grads: list[Tensor] = []
        gt = None
        with_time = ctx.needs_input_grad[1]
        for layer, g, gw, ga in zip(layers, gates, gws, gas, strict=True):
            layer_grads, part = _gate_backward(t, layer, g, gw, ga, with_time)
            grads += layer_grads
            if part is not None:
                gt = part if gt is None else gt + part
        return (gh0, gt, None, None, None, *grads)


def affine_stack_divergence(
    h0: Tensor,
    dim: int,
    layers: Sequence[Sequence[Tensor]],
    activation: str,
    t: Tensor | None = None,
    x_offset: int = 0,
) -> tuple[Tensor, Tensor]:
    """The output ``f`` of an affine stack and the exact trace of ``df/dx``.

    Arguments:
        h0: the first layer's input ``(batch, n_0)``, ``x`` in its columns
            ``x_offset`` to ``x_offset + dim`` (the other columns, such as a
            time column or a context, are constant in ``x``).
        dim: the dimension of ``x`` (and of ``f``).
        layers: at least two layers, each ``(W, a)`` (the map ``v W^T + a``;
            ``W_0 (n_1, n_0), ..., W_L (dim, n_L)``) or FFJORD's gated
            ``(W, b, G, c, U)`` (``diag(sigmoid(G t + c)) (W v + b) + U t``,
            ``G`` and ``U`` of shape ``(n_(k+1), 1)``, which needs ``t``).
        activation: a key of :data:`FUSED_ACTIVATIONS`.
        t: the time, a 0-dim tensor (for gated layers).
        x_offset: the first column of ``x`` in ``h0``.

    Returns:
        ``f`` of shape ``(batch, dim)`` and ``tr(df/dx)`` of shape ``(batch,)``,
        differentiable (first order by the written-out backward, second order
        by recomputation) with respect to every tensor argument.

    Raises:
        ValueError: for fewer than two layers, a layer that is neither a pair
            nor a 5-tuple, or gated layers without ``t``.

    Example:
        >>> import torch
        >>> w = [torch.randn(5, 2, dtype=torch.float64), torch.randn(2, 5, dtype=torch.float64)]
        >>> a = [torch.zeros(5, dtype=torch.float64), torch.zeros(2, dtype=torch.float64)]
        >>> x = torch.randn(3, 2, dtype=torch.float64)
        >>> f, div = affine_stack_divergence(x, 2, list(zip(w, a)), "tanh")
        >>> jac = torch.func.vmap(torch.func.jacrev(
        ...     lambda y: torch.tanh(y @ w[0].T + a[0]) @ w[1].T + a[1]))(x)
        >>> torch.allclose(div, torch.diagonal(jac, dim1=1, dim2=2).sum(-1))
        True
    """
    sizes = tuple(len(layer) for layer in layers)
    if len(sizes) < 2 or any(n not in (2, 5) for n in sizes):
        raise ValueError(
            "an affine stack needs at least two layers, each (W, a) or gated (W, b, G, c, U); "
            f"got layers of {list(sizes)} tensors."
        )
    if t is None:
        if any(n == 5 for n in sizes):
            raise ValueError("gated layers (W, b, G, c, U) need the time t.")
        t = h0.new_zeros(())
    tensors = [x for layer in layers for x in layer]
    xs = slice(x_offset, x_offset + dim)
    if not torch.is_grad_enabled() or not any(x.requires_grad for x in (h0, t, *tensors)):
        f, div, *_ = _gated_forward(h0, t, xs, layers, FUSED_ACTIVATIONS[activation])
        return f, div
    return _AffineStackDivergence.apply(h0, t, xs, activation, sizes, *tensors)
