"""The ``concatsquash`` field: FFJORD's concat-squash layers."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from flowkit.plugins.vector_fields.activations import (
    make_activation,
)
from flowkit.plugins.vector_fields.common import (
    check_context,
    check_context_dim,
    check_dim,
    check_widths,
)
from torch import Tensor, nn

from flowkit.interfaces import VectorField

__all__ = ["ConcatSquashField", "ConcatSquashLinear"]


class ConcatSquashLinear(nn.Module):
    """A linear map of ``x`` gated and shifted by functions of ``t``.

    ``y = (W x + c) * sigmoid(g t + h) + u t`` (FFJORD's ConcatSquash layer).

    References:
        Grathwohl et al., "FFJORD: Free-form Continuous Dynamics for Scalable
        Reversible Generative Models", ICLR 2019.
    """

    def __init__(self, dim_in: int, dim_out: int) -> None:
        super().__init__()
        self.linear = nn.Linear(dim_in, dim_out)
        self.gate = nn.Linear(1, dim_out)
        self.shift = nn.Linear(1, dim_out, bias=False)

    def forward(self, t: Tensor, x: Tensor) -> Tensor:
        """Apply the layer to ``x`` of shape ``(batch, dim_in)`` at time ``t``."""
        tt = torch.as_tensor(t, dtype=x.dtype, device=x.device).reshape(1, 1)
        return self.linear(x) * torch.sigmoid(self.gate(tt)) + self.shift(tt)


class ConcatSquashField(VectorField):
    """A stack of :class:`ConcatSquashLinear` layers with activations between them.

    Arguments:
        dim: the dimension of ``x``.
        hidden: widths of the hidden layers.
        activation: the name of the activation between layers.
        context_dim: the width of the context (0: unconditional); a context is
            concatenated to ``x`` at the input of the first layer.

    References:
        Grathwohl et al., "FFJORD", ICLR 2019.
    """

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
