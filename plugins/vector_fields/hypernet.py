"""The ``hypernet`` field: layer weights generated from the time by a hypernetwork."""

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

__all__ = ["HyperNetField"]


class HyperNetField(VectorField):
    """A one-hidden-layer field whose weights a small network produces from ``t``.

    ``f(t, x) = act(x W(t)^T + b(t)) (U(t) * sigmoid(G(t)))`` with ``W, U, G`` of
    shape ``(width, dim)`` and ``b`` of shape ``(width,)``, all read off the
    output of the hypernetwork ``t -> R^(3 width dim + width)``.

    Arguments:
        dim: the dimension of ``x``.
        width: the number of hidden units of the produced layer.
        hyper_hidden: widths of the hypernetwork's hidden layers.
        activation: the activation of the produced layer and of the hypernetwork.
        context_dim: the width of the context (0: unconditional); a context is
            concatenated to the hypernetwork's time input, so each sample gets
            the layer of its own context.

    References:
        Ha, Dai and Le, "HyperNetworks", ICLR 2017; Chen et al., "Neural Ordinary
        Differential Equations", NeurIPS 2018 (the CNF of their examples).
    """

    def __init__(
        self,
        *,
        dim: int,
        width: int = 64,
        hyper_hidden: Sequence[int] = (32, 32),
        activation: str = "tanh",
        context_dim: int = 0,
    ) -> None:
        super().__init__()
        self.dim = check_dim(dim)
        self.context_dim = check_context_dim(context_dim)
        (self.width,) = check_widths(width, "width")
        layers: list[nn.Module] = []
        fan_in = 1 + self.context_dim
        for w in check_widths(hyper_hidden, "hyper_hidden"):
            layers += [nn.Linear(fan_in, w), make_activation(activation)]
            fan_in = w
        layers.append(nn.Linear(fan_in, 3 * self.width * self.dim + self.width))
        self.hyper = nn.Sequential(*layers)
        self.act = make_activation(activation)

    def forward(self, t: Tensor, x: Tensor, context: Tensor | None = None) -> Tensor:
        """``f(t, x)`` (given ``context``, shape ``(batch, context_dim)``) for ``x`` of
        shape ``(batch, dim)``."""
        context = check_context(self, x, context)
        tt = torch.as_tensor(t, dtype=x.dtype, device=x.device).reshape(1, 1)
        n = self.width * self.dim
        if context is None:
            params = self.hyper(tt).reshape(-1)
            w = params[:n].reshape(self.width, self.dim)
            u = params[n : 2 * n].reshape(self.width, self.dim)
            g = params[2 * n : 3 * n].reshape(self.width, self.dim)
            b = params[3 * n :]
            return self.act(x @ w.T + b) @ (u * torch.sigmoid(g))
        # one produced layer per sample, from [t, context]
        rows = self.hyper(torch.cat([tt.expand(x.shape[0], 1), context], dim=1))
        w = rows[:, :n].reshape(-1, self.width, self.dim)
        u = rows[:, n : 2 * n].reshape(-1, self.width, self.dim)
        g = rows[:, 2 * n : 3 * n].reshape(-1, self.width, self.dim)
        b = rows[:, 3 * n :]
        h = self.act(torch.einsum("bd,bwd->bw", x, w) + b)
        return torch.einsum("bw,bwd->bd", h, u * torch.sigmoid(g))
