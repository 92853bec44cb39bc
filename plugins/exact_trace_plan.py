"""How the ``exact`` trace estimator computes a batch: vectorised, in chunks, or by loop.

The exact trace needs ``dim`` vector-Jacobian products. ``torch.func.vmap``
runs them as one batched backward pass (in chunks of ``chunk`` basis vectors
when asked); the loop of ``exact_loop`` runs them one by one. Both do the same
arithmetic: the vectorised pass saves the per-product overhead, which matters
when each product is cheap (small batches, GPUs), and costs a working set
``chunk`` times larger, which matters on a CPU once it leaves the cache.
:func:`exact_trace_plan` is the rule, measured with ``benchmarks/divergence.py``
(see :data:`VECTORISED_ROWS`).
"""

from __future__ import annotations

import torch

__all__ = ["LOOP_MAX_DIM", "MIN_CHUNK", "VECTORISED_ROWS", "exact_trace_plan"]

LOOP_MAX_DIM = 2
"""At ``dim <= LOOP_MAX_DIM`` the loop is used on a CPU: two products cost less
than ``torch.func``'s own set-up."""

VECTORISED_ROWS = 2048
"""On a CPU a vectorised pass holds at most this many rows (basis vectors times
batch rows); beyond it the batched backward leaves the cache and the loop wins
(one pass over all 128 basis vectors at batch 512 ran at 0.4x to 0.6x the loop's
speed; passes of 20 at batch 100 at 1.0x to 2.2x)."""

MIN_CHUNK = 8
"""Fewer basis vectors per pass than this save too little overhead to beat the loop
(at batch 512, passes of 4 basis vectors ran at 0.7x to 1.1x the loop's speed)."""


def exact_trace_plan(batch: int, dim: int, device: torch.device) -> int | None:
    """Basis vectors per vectorised pass for a ``(batch, dim)`` batch on ``device``.

    The rule: on an accelerator, all ``dim`` at once (kernel launches dominate;
    not measured on this project's machines); on a CPU, the loop (``None``) for
    ``dim <= LOOP_MAX_DIM`` or when fewer than ``MIN_CHUNK`` basis vectors fit in
    ``VECTORISED_ROWS`` rows, else passes of ``min(dim, VECTORISED_ROWS // batch)``
    basis vectors.

    Arguments:
        batch: the number of samples.
        dim: the dimension of ``x``.
        device: where the batch lives.

    Returns:
        The chunk size, at most ``dim``, or ``None`` for the per-dimension loop.

    Example:
        >>> cpu = torch.device("cpu")
        >>> [exact_trace_plan(batch, dim, cpu) for batch, dim in [(100, 2), (100, 64), (4096, 64)]]
        [None, 20, None]
    """
    if device.type != "cpu":
        return dim
    if dim <= LOOP_MAX_DIM:
        return None
    chunk = VECTORISED_ROWS // max(1, batch)
    if chunk < MIN_CHUNK:
        return None
    return min(dim, chunk)
