"""Rectified flow: building the pairs of a reflow stage, and its loss.

Rectified flow (Liu et al. 2023) first trains a field by flow matching on
independent pairs; each *reflow* stage then draws noise ``z``, pushes it through
the current model's sampler to ``x = sampler(z)``, and trains a new field by
flow matching on the fixed pairs ``(z, x)`` (straight paths, ``sigma = 0``).
The pairs' paths cross less than independent ones, so the flow gets straighter
and cheaper to integrate with every stage.

Nothing here depends on :class:`flowkit.CNF`: a sampler is any callable
``z -> x`` (for a CNF, e.g. ``lambda z: model.transform(z)`` integrating from
``t0`` to ``t1``).

References:
    Liu, Gong and Liu, "Flow Straight and Fast: Learning to Generate and
    Transfer Data with Rectified Flow", ICLR 2023.

Example:
    >>> import torch
    >>> pairs = reflow_pairs(lambda z: 2 * z, torch.ones(3, 2))
    >>> pairs.x.tolist()
    [[2.0, 2.0], [2.0, 2.0], [2.0, 2.0]]
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, NamedTuple

import torch
from torch import Tensor

from flowkit.errors import PluginContractError
from flowkit.matching.couplings import check_batch
from flowkit.matching.losses import Field, flow_matching_loss

__all__ = ["ReflowPairs", "Sampler", "rectified_flow_loss", "reflow_pairs"]

Sampler = Callable[..., Tensor]
"""A map from noise to samples: ``sampler(z)`` or ``sampler(z, context=context)``."""


class ReflowPairs(NamedTuple):
    """The fixed pairs of a reflow stage: ``x[i] = sampler(z[i])``.

    Attributes:
        z: the noise (base samples at ``t = 0``), shape ``(batch, dim)``.
        x: the sampler's output for each row of ``z``, the same shape (``t = 1``).
        context: the context each pair was sampled with, ``(batch, ...)``, or ``None``.
    """

    z: Tensor
    x: Tensor
    context: Tensor | None


def reflow_pairs(
    sampler: Sampler,
    z: Tensor,
    *,
    context: Tensor | None = None,
    batch_size: int | None = None,
) -> ReflowPairs:
    """Push the noise ``z`` through ``sampler`` and keep each row with its image.

    The sampler runs under :func:`torch.no_grad` (the pairs are training data),
    and the result is detached. The sampler must keep rows in order (row ``i``
    of its output is the image of row ``i`` of ``z``), as every flowkit flow does.

    Arguments:
        sampler: ``z -> x``; called as ``sampler(z, context=context)`` when a
            context is given, else as ``sampler(z)``.
        z: the noise, shape ``(batch, dim)``.
        context: ``None`` or one row per sample; it is passed to the sampler and
            returned with the pairs, aligned with them.
        batch_size: call the sampler on chunks of at most this many rows
            (``None``: all at once), to bound memory.

    Returns:
        The :class:`ReflowPairs` ``(z, sampler(z), context)``.

    Raises:
        ValueError: for a bad ``z``, ``context`` or ``batch_size``.
        PluginContractError: if the sampler returns anything but a tensor of
            ``z``'s shape.

    Example:
        >>> import torch
        >>> shift = lambda z, context: z + context
        >>> p = reflow_pairs(shift, torch.zeros(2, 1), context=torch.tensor([[1.0], [2.0]]))
        >>> p.x.tolist(), p.context.tolist()
        ([[1.0], [2.0]], [[1.0], [2.0]])
    """
    check_batch(z, z, context)
    if batch_size is not None and (
        isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1
    ):
        raise ValueError(f"batch_size must be a positive integer or None, got {batch_size!r}.")
    chunk = z.shape[0] if batch_size is None else batch_size
    outputs = []
    with torch.no_grad():
        for start in range(0, z.shape[0], max(chunk, 1)):
            zc = z[start : start + chunk]
            if context is None:
                xc = sampler(zc)
            else:
                xc = sampler(zc, context=context[start : start + chunk])
            if not isinstance(xc, Tensor) or xc.shape != zc.shape:
                got = tuple(xc.shape) if isinstance(xc, Tensor) else type(xc).__name__
                raise PluginContractError(
                    f"the sampler must return a tensor of the noise's shape {tuple(zc.shape)}, "
                    f"got {got}."
                )
            outputs.append(xc)
    x = torch.cat(outputs) if outputs else torch.empty_like(z)
    return ReflowPairs(z.detach(), x.detach(), context)


def rectified_flow_loss(
    field: Field,
    pairs: ReflowPairs,
    *,
    generator: torch.Generator | None = None,
    t: Tensor | None = None,
    reduction: Literal["mean", "sum", "none"] = "mean",
) -> Tensor:
    """The flow-matching loss of a reflow stage on its fixed pairs.

    The same as :func:`flowkit.matching.flow_matching_loss` with ``x0 = pairs.z``,
    ``x1 = pairs.x``, the pairs kept as given (``coupling="independent"``) and
    straight paths (``sigma = 0``).

    Arguments:
        field: the field of the new stage.
        pairs: from :func:`reflow_pairs` (a minibatch of them).
        generator: the random generator for the times.
        t: the times to use instead of drawing them, shape ``(batch,)``.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.

    Example:
        >>> import torch
        >>> pairs = reflow_pairs(lambda z: z + 1, torch.zeros(4, 2))
        >>> rectified_flow_loss(lambda t, x: torch.ones_like(x), pairs).item()
        0.0
    """
    return flow_matching_loss(
        field,
        pairs.z,
        pairs.x,
        coupling="independent",
        sigma=0.0,
        context=pairs.context,
        generator=generator,
        t=t,
        reduction=reduction,
    )
