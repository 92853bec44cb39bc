"""The ``mlp`` field: an MLP with time as an input, with its exact divergence."""

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
    time_column,
)
from flowkit.plugins.vector_fields.layered_trace import LayeredDivergence, layered_divergence
from torch import Tensor, nn

from flowkit.interfaces import VectorField

__all__ = ["MLPField"]


class MLPField(LayeredDivergence, VectorField):
    """A multilayer perceptron on ``[t, x]``: time concatenated to the input.

    A conditional field (``context_dim = c > 0``) takes ``[t, x, context]``:
    the context only adds a constant (in ``x``) to the first pre-activation,
    so the closed-form divergence below stays exact.

    Its divergence is known in closed form: the Jacobian is
    ``W_out D_L W_L ... D_1 W_1x`` with ``D_k`` the diagonal matrices of the
    activations' derivatives and ``W_1x`` the first layer without its time
    column, so :meth:`divergence` computes the exact trace from that product
    (:func:`~flowkit.plugins.vector_fields.layered_trace.layered_divergence`:
    forward accumulation over ``min(dim, width_1)`` columns), with no
    vector-Jacobian product at all. The cost is
    ``O(batch * sum_k width_k width_(k+1) * min(dim, width_1))``. With the
    activations of
    :data:`~flowkit.plugins.vector_fields.affine_stack.FUSED_ACTIVATIONS` (and
    ``dim <= width_1``) value and trace come from
    :func:`~flowkit.plugins.vector_fields.affine_stack.affine_stack_divergence`,
    whose backward pass is written out instead of recorded by autograd.

    Arguments:
        dim: the dimension of ``x``.
        hidden: widths of the hidden layers.
        activation: the name of the activation between layers (see :data:`ACTIVATIONS`).
        context_dim: the width of the context (0: unconditional).

    Raises:
        ValueError: for a non-positive ``dim``, bad widths, an unknown activation
            or a negative ``context_dim``; in ``forward``, for a context that
            does not match ``context_dim``.
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
        widths = check_widths(hidden)
        act = make_activation(activation)
        self.activation = activation.lower()
        layers: list[nn.Module] = []
        fan_in = self.dim + 1 + self.context_dim
        for width in widths:
            layers += [nn.Linear(fan_in, width), type(act)()]
            fan_in = width
        layers.append(nn.Linear(fan_in, self.dim))
        self.net = nn.Sequential(*layers)

    def _inputs(self, t: Tensor, x: Tensor, context: Tensor | None) -> Tensor:
        """``[t, x]``, or ``[t, x, context]`` for a conditional field."""
        context = check_context(self, x, context)
        parts = [time_column(t, x), x] if context is None else [time_column(t, x), x, context]
        return torch.cat(parts, dim=1)

    def forward(self, t: Tensor, x: Tensor, context: Tensor | None = None) -> Tensor:
        """``f(t, x)`` (given ``context``, shape ``(batch, context_dim)``) for ``x`` of
        shape ``(batch, dim)``."""
        return self.net(self._inputs(t, x, context))

    def _jacobian_block(self) -> tuple[int, int]:
        linears = [m for m in self.net if isinstance(m, nn.Linear)]
        columns = min(self.dim, linears[0].out_features)
        return columns, max(m.out_features for m in linears[:-1])

    def _value_and_divergence(
        self, t: Tensor, x: Tensor, context: Tensor | None
    ) -> tuple[Tensor, Tensor]:
        linears = [m for m in self.net if isinstance(m, nn.Linear)]
        if self.fused_divergence and fused_divergence_applies(
            self.activation, linears[0].out_features, self.dim
        ):
            layers = [(layer.weight, layer.bias) for layer in linears]
            h0 = self._inputs(t, x, context)  # [t, x, context]: x from column 1
            return affine_stack_divergence(h0, self.dim, layers, self.activation, x_offset=1)
        h = self._inputs(t, x, context)
        slopes = []
        for i, layer in enumerate(linears[:-1]):
            h, slope = value_and_slope(self.activation, self.net[2 * i + 1], layer(h))
            slopes.append(slope)
        weights = [
            linears[0].weight[:, 1 : 1 + self.dim],  # the x columns of the first layer
            *(layer.weight for layer in linears[1:]),
        ]
        return linears[-1](h), layered_divergence(weights, slopes)
