"""Option checks, the time column and the context check shared by the built-in fields."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["check_context", "check_context_dim", "check_dim", "check_widths", "time_column"]


def check_dim(dim: object) -> int:
    if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
        raise ValueError(f"dim must be a positive integer, got {dim!r}.")
    return dim


def check_context_dim(context_dim: object) -> int:
    """The ``context_dim`` option: a non-negative int (0: unconditional)."""
    if isinstance(context_dim, bool) or not isinstance(context_dim, int) or context_dim < 0:
        raise ValueError(
            f"context_dim must be a non-negative integer (0: unconditional), got {context_dim!r}."
        )
    return context_dim


def check_context(field: object, x: Tensor, context: Tensor | None) -> Tensor | None:
    """Check the ``context`` given to a built-in field against its ``context_dim``.

    Returns:
        ``None`` for an unconditional field, else the context, shape ``(batch, c)``.

    Raises:
        ValueError: for a context given to an unconditional field, none given
            to a conditional one, or a context of the wrong shape.
    """
    name = type(field).__name__
    context_dim: int = getattr(field, "context_dim", 0)
    if context_dim == 0:
        if context is not None:
            raise ValueError(
                f"{name} was built unconditional (context_dim=0) but got a context; build it "
                "with context_dim=c to condition it, or drop the context."
            )
        return None
    if context is None:
        raise ValueError(
            f"{name} is conditional (context_dim={context_dim}): call it as "
            f"forward(t, x, context=...) with a context of shape (batch, {context_dim})."
        )
    if context.dim() != 2 or context.shape != (x.shape[0], context_dim):
        raise ValueError(
            f"{name} expects a context of shape ({x.shape[0]}, {context_dim}) for x of "
            f"shape {tuple(x.shape)}, got {tuple(context.shape)}."
        )
    return context


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
