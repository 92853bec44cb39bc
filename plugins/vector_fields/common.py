"""Option checks and the time column shared by the built-in fields."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["check_dim", "check_widths", "time_column"]


def check_dim(dim: object) -> int:
    if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
        raise ValueError(f"dim must be a positive integer, got {dim!r}.")
    return dim


def check_widths(hidden: object, what: str = "hidden") -> tuple[int, ...]:
    if isinstance(hidden, int):
        hidden = (hidden,)
    try:
        widths = tuple(hidden)  # type: ignore[arg-type]
    except TypeError:
        raise ValueError(f"{what} must be a sequence of positive widths, got {hidden!r}.") from None
    if not widths or any(isinstance(w, bool) or not isinstance(w, int) or w < 1 for w in widths):
        raise ValueError(f"{what} must be a non-empty sequence of positive ints, got {hidden!r}.")
    return widths


def time_column(t: Tensor, x: Tensor) -> Tensor:
    """``t`` as a ``(batch, 1)`` column in ``x``'s dtype and device."""
    return torch.as_tensor(t, dtype=x.dtype, device=x.device).reshape(1, 1).expand(x.shape[0], 1)
