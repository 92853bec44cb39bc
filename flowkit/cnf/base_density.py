"""The default base density of a flow model: :class:`StandardNormal`."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from flowkit.distributions import standard_normal_log_prob

__all__ = ["StandardNormal"]


class StandardNormal:
    """The standard normal base density ``N(0, I_dim)``, in any dtype and device.

    Arguments:
        dim: the dimension.
    """

    def __init__(self, dim: int) -> None:
        self.dim = dim

    def log_prob(self, z: Tensor) -> Tensor:
        """``log N(z; 0, I)`` per row, shape ``(batch,)``."""
        return standard_normal_log_prob(z)

    def sample(
        self,
        sample_shape: Sequence[int] = (),
        *,
        generator: torch.Generator | None = None,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> Tensor:
        """Samples of shape ``(*sample_shape, dim)``."""
        shape = (*tuple(sample_shape), self.dim)
        return torch.randn(shape, generator=generator, dtype=dtype, device=device)

    def __repr__(self) -> str:
        return f"StandardNormal(dim={self.dim})"
