"""The ``linear`` field ``A(t) x + b(t)``: closed-form flows and divergence for tests."""

from __future__ import annotations

import torch
from flowkit.plugins.vector_fields.common import check_dim
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

    Raises:
        ValueError: for shapes that do not match ``dim``, or time terms given
            without ``time_dependent=True``.
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
    ) -> None:
        super().__init__()
        self.dim = check_dim(dim)
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

    def coefficients(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """``(A(t), b(t))``."""
        if not self.time_dependent:
            return self.matrix, self.bias
        tt = torch.as_tensor(t, dtype=self.matrix.dtype, device=self.matrix.device)
        return self.matrix + tt * self.time_matrix, self.bias + tt * self.time_bias

    def forward(self, t: Tensor, x: Tensor) -> Tensor:
        """``A(t) x + b(t)`` for ``x`` of shape ``(batch, dim)``."""
        a, b = self.coefficients(t)
        return x @ a.T + b

    def divergence(self, t: Tensor, x: Tensor) -> Tensor:
        """``tr A(t)`` for every row of ``x``, shape ``(batch,)``."""
        a, _ = self.coefficients(t)
        return torch.diagonal(a).sum().expand(x.shape[0])
