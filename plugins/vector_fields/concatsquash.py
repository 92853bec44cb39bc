"""The ``concatsquash`` field: FFJORD's concat-squash layers, with their exact divergence."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from flowkit.plugins.vector_fields.activations import make_activation, value_and_slope
from flowkit.plugins.vector_fields.affine_stack import (
    affine_stack_divergence,
    fused_divergence_applies,
)
from flowkit.plugins.vector_fields.common import (
    check_context,
    check_context_dim,
    check_dim,
    check_widths,
)
from flowkit.plugins.vector_fields.layered_trace import LayeredDivergence, layered_divergence
from torch import Tensor, nn

from flowkit.interfaces import VectorField

__all__ = ["ConcatSquashField", "ConcatSquashLinear"]


class ConcatSquashLinear(nn.Module):
    """A linear map of ``x`` gated and shifted by functions of ``t``.

    ``y = (W x + c) * sigmoid(g t + h) + u t`` (FFJORD's ConcatSquash layer).
    For a fixed ``t`` it is affine in ``x`` with the matrix
    ``diag(sigmoid(g t + h)) W`` (:meth:`affine`).

    References:
        Grathwohl et al., "FFJORD: Free-form Continuous Dynamics for Scalable
        Reversible Generative Models", ICLR 2019.
    """

    def __init__(self, dim_in: int, dim_out: int) -> None:
        super().__init__()
        self.linear = nn.Linear(dim_in, dim_out)
        self.gate = nn.Linear(1, dim_out)
        self.shift = nn.Linear(1, dim_out, bias=False)

    def gate_and_shift(self, t: Tensor, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(sigmoid(g t + h), u t)`` at time ``t``, each of shape ``(1, dim_out)``."""
        tt = torch.as_tensor(t, dtype=x.dtype, device=x.device).reshape(1, 1)
        return torch.sigmoid(self.gate(tt)), self.shift(tt)

    def affine(self, t: Tensor, x: Tensor) -> tuple[Tensor, Tensor]:
        """The layer at time ``t`` as ``y = x A^T + a``: ``A = diag(gate) W`` (its Jacobian,
        ``(dim_out, dim_in)``) and ``a = gate * c + u t`` (``(dim_out,)``)."""
        gate, shift = self.gate_and_shift(t, x)
        gate = gate.reshape(-1)
        weight = gate.unsqueeze(1) * self.linear.weight
        return weight, torch.addcmul(shift.reshape(-1), gate, self.linear.bias)

    def forward(self, t: Tensor, x: Tensor) -> Tensor:
        """Apply the layer to ``x`` of shape ``(batch, dim_in)`` at time ``t``."""
        gate, shift = self.gate_and_shift(t, x)
        return self.linear(x) * gate + shift


class ConcatSquashField(LayeredDivergence, VectorField):
    """A stack of :class:`ConcatSquashLinear` layers with activations between them.

    Its divergence is known in closed form: for a fixed ``t`` every layer is
    affine in its input with the matrix ``diag(gate_k(t)) W_k``, so the
    Jacobian is ``G_L W_L D_L ... D_1 G_1 W_1x`` (``G_k`` the gates, ``D_k``
    the activations' derivatives, ``W_1x`` the first layer's ``x`` columns: a
    context is constant in ``x``), and :meth:`value_and_divergence` computes
    its exact trace from one forward pass (used by the ``analytic`` trace
    estimator), at a cost of
    ``O(batch * sum_k width_k width_(k+1) * min(dim, width_1))``: with the
    activations of
    :data:`~flowkit.plugins.vector_fields.affine_stack.FUSED_ACTIVATIONS` by
    :func:`~flowkit.plugins.vector_fields.affine_stack.affine_stack_divergence`
    (gates included, a written-out backward pass), otherwise with
    :func:`~flowkit.plugins.vector_fields.layered_trace.layered_divergence`.

    Arguments:
        dim: the dimension of ``x``.
        hidden: widths of the hidden layers.
        activation: the name of the activation between layers.
        context_dim: the width of the context (0: unconditional); a context is
            concatenated to ``x`` at the input of the first layer.

    Raises:
        ValueError: for a non-positive ``dim``, bad widths, an unknown activation
            or a negative ``context_dim``; in ``forward`` and the divergence, for
            a context that does not match ``context_dim``.

    Example:
        >>> import torch
        >>> field = ConcatSquashField(dim=2, hidden=(8,)).double()
        >>> t, x = torch.tensor(0.3), torch.randn(5, 2, dtype=torch.float64)
        >>> jac = torch.func.vmap(torch.func.jacrev(lambda y: field(t, y[None])[0]))(x)
        >>> torch.allclose(field.divergence(t, x), torch.diagonal(jac, dim1=1, dim2=2).sum(-1))
        True

    References:
        Grathwohl et al., "FFJORD", ICLR 2019.
    """

    has_divergence = True
    fused_divergence: bool = True
    """Compute value and divergence with the fused pass where it applies (set ``False``
    on an instance to record the same closed form with autograd instead)."""

    def __init__(
        self,
        *,
        dim: int,
        hidden: Sequence[int] = (64, 64, 64),
        activation: str = "tanh",
        context_dim: int = 0,
    ) -> None:
        super().__init__()
        self.dim = check_dim(dim)
        self.context_dim = check_context_dim(context_dim)
        widths = (*check_widths(hidden), self.dim)
        fan_ins = (self.dim + self.context_dim, *widths[:-1])
        self.layers = nn.ModuleList(
            ConcatSquashLinear(a, b) for a, b in zip(fan_ins, widths, strict=True)
        )
        self.activations = nn.ModuleList(make_activation(activation) for _ in widths[:-1])
        self.activation = activation.lower()

    def forward(self, t: Tensor, x: Tensor, context: Tensor | None = None) -> Tensor:
        """``f(t, x)`` (given ``context``, shape ``(batch, context_dim)``) for ``x`` of
        shape ``(batch, dim)``."""
        context = check_context(self, x, context)
        h = x if context is None else torch.cat([x, context], dim=1)
        for i, layer in enumerate(self.layers):
            h = layer(t, h)
            if i < len(self.activations):
                h = self.activations[i](h)
        return h

    def _jacobian_block(self) -> tuple[int, int]:
        columns = min(self.dim, self.layers[0].linear.out_features)
        return columns, max(layer.linear.out_features for layer in self.layers[:-1])

    def _value_and_divergence(
        self, t: Tensor, x: Tensor, context: Tensor | None
    ) -> tuple[Tensor, Tensor]:
        h = x if context is None else torch.cat([x, context], dim=1)
        if self.fused_divergence and fused_divergence_applies(
            self.activation, self.layers[0].linear.out_features, self.dim
        ):
            tt = torch.as_tensor(t, dtype=x.dtype, device=x.device).reshape(())
            layers = [
                (
                    layer.linear.weight,
                    layer.linear.bias,
                    layer.gate.weight,
                    layer.gate.bias,
                    layer.shift.weight,
                )
                for layer in self.layers
            ]
            return affine_stack_divergence(h, self.dim, layers, self.activation, tt)
        weights, slopes = [], []
        for i, layer in enumerate(self.layers):
            weight, bias = layer.affine(t, h)
            h = nn.functional.linear(h, weight, bias)
            weights.append(weight)
            if i < len(self.activations):
                h, slope = value_and_slope(self.activation, self.activations[i], h)
                slopes.append(slope)
        weights[0] = weights[0][:, : self.dim]  # the context columns are constant in x
        return h, layered_divergence(weights, slopes)
