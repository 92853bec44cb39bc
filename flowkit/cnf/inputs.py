"""What a flow model checks at its boundary: points, contexts and times.

Each check raises :class:`~flowkit.errors.InvalidInputError` (``TypeError`` /
``ValueError`` for times) saying what is wrong and how to fix it, before any
solve starts.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from flowkit.dynamics import check_field_takes_context
from flowkit.errors import InvalidInputError

__all__ = ["check_context", "check_points", "check_time"]


def check_time(value: object, name: str) -> float:
    """A finite real time, as a float.

    Raises:
        TypeError: for something that is not a real number.
        ValueError: for NaN or an infinite time.
    """
    try:
        out = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a real number, got {value!r}.") from None
    if not math.isfinite(out):
        raise ValueError(f"{name} must be finite, got {value!r}.")
    return out


def check_points(
    x: object,
    dim: int,
    dtype: torch.dtype,
    device: torch.device,
    *,
    strict: bool = True,
    what: str = "x",
) -> Tensor:
    """Validate a batch of points: shape ``(batch, dim)``, the model's dtype and device, finite.

    ``strict`` (a model with parameters) also requires the model's dtype and
    device; a model without parameters follows its inputs.

    Raises:
        InvalidInputError: saying what is wrong and how to fix it.
    """
    if not isinstance(x, Tensor):
        raise InvalidInputError(f"{what} must be a torch.Tensor, got {type(x).__name__}.")
    if x.dim() != 2 or x.shape[1] != dim or x.shape[0] == 0:
        raise InvalidInputError(
            f"{what} must have shape (batch, {dim}) with batch >= 1, got "
            f"{tuple(x.shape)}; reshape a single point with x.reshape(1, -1)."
        )
    if not x.is_floating_point():
        raise InvalidInputError(
            f"{what} has dtype {x.dtype}, but points must be floating point; convert the "
            f"data to the model's dtype with {what}.to({dtype}) (or {what}.float())."
        )
    if strict and x.dtype != dtype:
        raise InvalidInputError(
            f"{what} has dtype {x.dtype} but the model computes in {dtype}; "
            f"convert with {what}.to({dtype}) or the model with model.to({x.dtype})."
        )
    if strict and x.device != device:
        raise InvalidInputError(
            f"{what} is on {x.device} but the model is on {device}; move one of them "
            f"({what}.to('{device}') or model.to('{x.device}'))."
        )
    bad = ~torch.isfinite(x).all(dim=1)
    if bool(bad.any()):
        rows = bad.nonzero().flatten()[:5].tolist()
        raise InvalidInputError(
            f"{what} contains NaN or Inf in {int(bad.sum())} row(s) (e.g. rows {rows}); "
            "remove or impute them before calling the model."
        )
    return x


def check_context(field: nn.Module, context: object, x: Tensor) -> Tensor | None:
    """Validate a context for the batch ``x``: ``(batch, c)`` or ``(c,)``, broadcast.

    ``None`` means unconditional (allowed unless the field is built
    conditional, ``context_dim > 0``).

    Returns:
        ``None``, or the context of shape ``(batch, c)`` (a ``(c,)`` context
        expanded, so that its gradient sums over the batch).

    Raises:
        InvalidInputError: for a field that takes no context, a conditional
            field without one, a wrong shape, width, dtype or device, or
            NaN/Inf, saying how to fix it.
    """
    name = getattr(field, "registry_name", None) or type(field).__name__
    context_dim = getattr(field, "context_dim", None)
    if context is None:
        if isinstance(context_dim, int) and context_dim > 0:
            raise InvalidInputError(
                f"The vector field {name!r} is conditional (context_dim={context_dim}): "
                f"pass context= with shape (batch, {context_dim}) or ({context_dim},)."
            )
        return None
    if not isinstance(context, Tensor):
        raise InvalidInputError(f"context must be a torch.Tensor, got {type(context).__name__}.")
    if isinstance(context_dim, int) and context_dim == 0:
        raise InvalidInputError(
            f"A context was given, but the vector field {name!r} was built unconditional "
            "(context_dim=0); build it with context_dim=c (the context's width), or drop "
            "the context."
        )
    check_field_takes_context(field)
    batch = x.shape[0]
    if context.dim() == 1 and context.shape[0] >= 1:
        context = context.expand(batch, context.shape[0])
    if context.dim() != 2 or context.shape[0] != batch or context.shape[1] == 0:
        raise InvalidInputError(
            f"context must have shape (batch, c) with one row per sample ({batch} rows) "
            f"or (c,) for the whole batch, got {tuple(context.shape)}."
        )
    if isinstance(context_dim, int) and context.shape[1] != context_dim:
        raise InvalidInputError(
            f"context has width {context.shape[1]}, but the vector field {name!r} was "
            f"built with context_dim={context_dim}."
        )
    if context.dtype != x.dtype:
        hint = (
            " (for class labels, flowkit.data.one_hot(labels, n_classes) makes a context)"
            if not context.is_floating_point()
            else ""
        )
        raise InvalidInputError(
            f"context has dtype {context.dtype}, but the points have dtype {x.dtype}; "
            f"convert with context.to({x.dtype}){hint}."
        )
    if context.device != x.device:
        raise InvalidInputError(
            f"context is on {context.device} but the points are on {x.device}; "
            f"move it with context.to('{x.device}')."
        )
    bad = ~torch.isfinite(context).all(dim=1)
    if bool(bad.any()):
        rows = bad.nonzero().flatten()[:5].tolist()
        raise InvalidInputError(
            f"context contains NaN or Inf in {int(bad.sum())} row(s) (e.g. rows {rows}); "
            "remove or impute them before calling the model."
        )
    return context
