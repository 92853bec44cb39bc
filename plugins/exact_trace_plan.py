"""How the ``exact`` trace estimator computes a batch: vectorised, in chunks, or by loop.

The exact trace needs ``dim`` vector-Jacobian products. ``torch.func.vmap``
runs them as one batched backward pass (in chunks of ``chunk`` basis vectors
when asked); the loop of ``exact_loop`` runs them one by one. Both do the same
arithmetic: the vectorised pass saves the per-product overhead, which matters
when each product is cheap (small batches, GPUs), and costs a working set
``chunk`` times larger, which matters on a CPU once it leaves the cache.
:func:`exact_trace_plan` is the rule, measured with ``benchmarks/divergence.py``
(see the constants below).
"""

from __future__ import annotations

import torch

__all__ = [
    "CHUNK_ROWS",
    "FULL_PASS_ROWS",
    "LOOP_MAX_DIM",
    "MIN_CHUNK",
    "exact_trace_plan",
]

LOOP_MAX_DIM = 2
"""At ``dim <= LOOP_MAX_DIM`` the loop is used on a CPU: two products cost less
than ``torch.func``'s own set-up (one vectorised pass ran at 0.5x to 0.9x the
loop's speed at d = 2)."""

FULL_PASS_ROWS = 4096
"""On a CPU, one vectorised pass over all ``dim`` basis vectors while ``dim * batch``
(its rows) stays within this: at batch 512, d = 8 (4096 rows) it ran at 1.0x to
1.1x the loop's speed, at d = 32 (16384 rows) at 0.6x to 0.8x."""

CHUNK_ROWS = 2048
"""Above :data:`FULL_PASS_ROWS`, passes of ``CHUNK_ROWS // batch`` basis vectors: at
batch 100, passes of 20 ran at 1.0x to 2.2x the loop's speed up to d = 128."""

MIN_CHUNK = 8
"""Passes of fewer basis vectors than this save too little overhead to beat the loop
(at batch 512, passes of 4 ran at 0.7x to 1.1x the loop's speed)."""


def exact_trace_plan(batch: int, dim: int, device: torch.device) -> int | None:
    """Basis vectors per vectorised pass for a ``(batch, dim)`` batch on ``device``.

    The rule: on an accelerator, all ``dim`` at once (kernel launches dominate;
    not measured on this project's machines). On a CPU: the loop (``None``) at
    ``dim <= LOOP_MAX_DIM``; one pass over all ``dim`` basis vectors while
    ``dim * batch <= FULL_PASS_ROWS``; else passes of ``CHUNK_ROWS // batch``
    basis vectors when that is at least ``MIN_CHUNK``; else the loop. With the
    defaults: one pass up to d = 40 at batch 100 and d = 8 at batch 512, passes
    of 20 above it at batch 100, the loop at d >= 16 for batches above 256.

    Arguments:
        batch: the number of samples.
        dim: the dimension of ``x``.
        device: where the batch lives.

    Returns:
        The chunk size, at most ``dim``, or ``None`` for the per-dimension loop.

    Example:
        >>> cpu = torch.device("cpu")
        >>> [exact_trace_plan(b, d, cpu) for b, d in [(100, 2), (100, 64), (512, 8), (512, 64)]]
        [None, 20, 8, None]
    """
    if device.type != "cpu":
        return dim
    if dim <= LOOP_MAX_DIM:
        return None
    if dim * batch <= FULL_PASS_ROWS:
        return dim
    chunk = CHUNK_ROWS // max(1, batch)
    return min(dim, chunk) if chunk >= MIN_CHUNK else None
