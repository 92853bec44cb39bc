"""The ``hypernet`` field: layer weights generated from the time by a hypernetwork."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from flowkit.plugins.vector_fields.activations import make_activation, value_and_slope
from flowkit.plugins.vector_fields.common import (
    check_context,
    check_context_dim,
    check_dim,
    check_widths,
)
from flowkit.plugins.vector_fields.layered_trace import LayeredDivergence, layered_divergence
from torch import Tensor, nn

from flowkit.interfaces import VectorField

__all__ = ["HyperNetField"]


class HyperNetField(LayeredDivergence, VectorField):
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

    Its divergence is known in closed form: for a fixed ``t`` (and context)
    the Jacobian is ``V^T D W`` with ``V = U * sigmoid(G)`` and ``D`` the
    activation's derivatives, so ``tr(df/dx) = sum_j D_j sum_i W_ji V_ji``:
    :meth:`value_and_divergence` computes it with the value in one pass, at a
    cost of ``O(batch * width)`` beyond the forward pass (``O(batch * width *
    dim)`` with a context, whose layers differ per sample). It is used by the
    ``analytic`` trace estimator.

    Raises:
        ValueError: for a non-positive ``dim`` or bad widths, an unknown
            activation or a negative ``context_dim``; in ``forward`` and the
            divergence, for a context that does not match ``context_dim``.

    Example:
        >>> import torch
        >>> field = HyperNetField(dim=3, width=8).double()
        >>> t, x = torch.tensor(0.3), torch.randn(5, 3, dtype=torch.float64)
        >>> jac = torch.func.vmap(torch.func.jacrev(lambda y: field(t, y[None])[0]))(x)
        >>> torch.allclose(field.divergence(t, x), torch.diagonal(jac, dim1=1, dim2=2).sum(-1))
        True

    References:
        Ha, Dai and Le, "HyperNetworks", ICLR 2017; Chen et al., "Neural Ordinary
        Differential Equations", NeurIPS 2018 (the CNF of their examples).
    """

    has_divergence = True

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
        self.activation = activation.lower()

    def layer(self, t: Tensor, x: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
        """The layer the hypernetwork produces at time ``t`` (and ``context``).

        Arguments:
            t: the time, a scalar.
            x: the batch ``(batch, dim)`` (its dtype, device and size are used).
            context: the checked context ``(batch, context_dim)``, or ``None``.

        Returns:
            ``(W, b, V)`` with ``V = U * sigmoid(G)``, so that
            ``f = act(x W^T + b) V``: shapes ``(width, dim)``, ``(width,)``,
            ``(width, dim)`` for an unconditional field; with a context, one
            layer per sample, ``(batch, width, dim)``, ``(batch, width)``,
            ``(batch, width, dim)``.
        """
        tt = torch.as_tensor(t, dtype=x.dtype, device=x.device).reshape(1, 1)
        n = self.width * self.dim
        if context is None:
            params = self.hyper(tt)  # (1, 3n + width)
        else:  # one produced layer per sample, from [t, context]
            params = self.hyper(torch.cat([tt.expand(x.shape[0], 1), context], dim=1))
        shape = (self.width, self.dim) if context is None else (-1, self.width, self.dim)
        w = params[:, :n].reshape(shape)
        u = params[:, n : 2 * n].reshape(shape)
        g = params[:, 2 * n : 3 * n].reshape(shape)
        b = params[:, 3 * n :]
        return w, (b[0] if context is None else b), u * torch.sigmoid(g)

    def _pre_activation(self, x: Tensor, w: Tensor, b: Tensor) -> Tensor:
        return x @ w.T + b if w.dim() == 2 else torch.einsum("bd,bwd->bw", x, w) + b

    def _output(self, h: Tensor, v: Tensor) -> Tensor:
        return h @ v if v.dim() == 2 else torch.einsum("bw,bwd->bd", h, v)

    def forward(self, t: Tensor, x: Tensor, context: Tensor | None = None) -> Tensor:
        """``f(t, x)`` (given ``context``, shape ``(batch, context_dim)``) for ``x`` of
        shape ``(batch, dim)``."""
        context = check_context(self, x, context)
        w, b, v = self.layer(t, x, context)
        return self._output(self.act(self._pre_activation(x, w, b)), v)

    def _jacobian_block(self) -> tuple[int, int]:
        return 1, self.width  # the trace needs no Jacobian block: (batch, width) at most

    def _value_and_divergence(
        self, t: Tensor, x: Tensor, context: Tensor | None
    ) -> tuple[Tensor, Tensor]:
        w, b, v = self.layer(t, x, context)
        h, slope = value_and_slope(self.activation, self.act, self._pre_activation(x, w, b))
        return self._output(h, v), layered_divergence([w, v.mT], [slope])
