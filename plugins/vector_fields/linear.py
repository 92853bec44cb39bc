"""The ``linear`` field ``A(t) x + b(t)``: closed-form flows and divergence for tests."""

from __future__ import annotations

import torch
from flowkit.plugins.vector_fields.common import check_context, check_context_dim, check_dim
from torch import Tensor, nn

from flowkit.interfaces import VectorField

__all__ = ["LinearField"]


def _init_tensor(value: Tensor | None, shape: tuple[int, ...], name: str, scale: float) -> Tensor:
    if value is None:
        return scale * torch.randn(shape)
    value = torch.as_tensor(value, dtype=torch.get_default_dtype())
    if tuple(value.shape) != shape:
        raise ValueError(f"{name} must have shape {shape}, got {tuple(value.shape)}.")
    return value.clone()


class LinearField(VectorField):
    """An affine field ``f(t, x) = A(t) x + b(t)`` with its exact divergence ``tr A(t)``.

    A conditional field (``context_dim = c > 0``) adds the shift ``C context``
    with ``C`` of shape ``(dim, c)``: ``f(t, x) = A(t) x + b(t) + C context``;
    its divergence is still ``tr A(t)``.

    ``A(t) = A0 + t A1`` and ``b(t) = b0 + t b1`` when ``time_dependent`` is True,
    else ``A(t) = A0`` and ``b(t) = b0``. The flow of a constant ``A`` is
    ``x(t) = expm(A t) x(0)`` (plus the bias term), which makes this field the
    reference for closed-form tests.

    Arguments:
        dim: the dimension of ``x``.
        matrix: the initial ``A0``, shape ``(dim, dim)`` (default: random, scaled by ``scale``).
        bias: the initial ``b0``, shape ``(dim,)`` (default: zeros).
        time_dependent: whether ``A`` and ``b`` vary linearly in ``t``.
        time_matrix: the initial ``A1`` (only with ``time_dependent``; default random).
        time_bias: the initial ``b1`` (only with ``time_dependent``; default zeros).
        scale: the standard deviation of random initial matrix entries.
        context_dim: the width of the context (0: unconditional).
        context_matrix: the initial ``C``, shape ``(dim, context_dim)`` (only
            with ``context_dim > 0``; default random, scaled by ``scale``).

    Raises:
        ValueError: for shapes that do not match ``dim``, time terms given
            without ``time_dependent=True``, or a ``context_matrix`` without
            ``context_dim``; in ``forward``, for a context that does not match
            ``context_dim``.
    """

    has_divergence = True

    def __init__(
        self,
        *,
        dim: int,
        matrix: Tensor | None = None,
        bias: Tensor | None = None,
        time_dependent: bool = False,
        time_matrix: Tensor | None = None,
        time_bias: Tensor | None = None,
        scale: float = 0.1,
        context_dim: int = 0,
        context_matrix: Tensor | None = None,
    ) -> None:
        super().__init__()
        self.dim = check_dim(dim)
        self.context_dim = check_context_dim(context_dim)
        if self.context_dim == 0 and context_matrix is not None:
            raise ValueError(
                "context_matrix was given but context_dim=0; pass context_dim=c (its width)."
            )
        self.time_dependent = bool(time_dependent)
        if not self.time_dependent and (time_matrix is not None or time_bias is not None):
            raise ValueError(
                "time_matrix/time_bias were given but time_dependent=False; "
                "pass time_dependent=True to use them."
            )
        square = (self.dim, self.dim)
        scaled = scale / self.dim**0.5
        self.matrix = nn.Parameter(_init_tensor(matrix, square, "matrix", scaled))
        zeros = torch.zeros(self.dim) if bias is None else bias
        self.bias = nn.Parameter(_init_tensor(zeros, (self.dim,), "bias", 0.0))
        if self.time_dependent:
            a1 = _init_tensor(time_matrix, square, "time_matrix", scaled)
            self.time_matrix = nn.Parameter(a1)
            tz = torch.zeros(self.dim) if time_bias is None else time_bias
            self.time_bias = nn.Parameter(_init_tensor(tz, (self.dim,), "time_bias", 0.0))
        if self.context_dim:
            shape = (self.dim, self.context_dim)
            c_scale = scale / self.context_dim**0.5
            self.context_matrix = nn.Parameter(
                _init_tensor(context_matrix, shape, "context_matrix", c_scale)
            )

    def coefficients(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """``(A(t), b(t))``."""
        if not self.time_dependent:
            return self.matrix, self.bias
        tt = torch.as_tensor(t, dtype=self.matrix.dtype, device=self.matrix.device)
        return self.matrix + tt * self.time_matrix, self.bias + tt * self.time_bias

    def forward(self, t: Tensor, x: Tensor, context: Tensor | None = None) -> Tensor:
        """``A(t) x + b(t)`` (``+ C context``) for ``x`` of shape ``(batch, dim)``."""
        context = check_context(self, x, context)
        a, b = self.coefficients(t)
        out = x @ a.T + b
        return out if context is None else out + context @ self.context_matrix.T

    def divergence(self, t: Tensor, x: Tensor, context: Tensor | None = None) -> Tensor:
        """``tr A(t)`` for every row of ``x``, shape ``(batch,)`` (the context does not enter)."""
        check_context(self, x, context)
        a, _ = self.coefficients(t)
        return torch.diagonal(a).sum().expand(x.shape[0])
