"""Hypothesis strategies with bounded values for flowkit's property tests.

Every strategy draws values small enough that closed forms stay accurate in
float64 and solves stay cheap: dimensions up to 4, batches up to 8, matrices of
norm at most about 1, time spans of length at most 1 in either direction.

Example:
    >>> from hypothesis import given
    >>> from flowkit.testing import strategies as fst
    >>> @given(fst.skew_symmetric_matrices(dim=3))
    ... def test_skew(a):
    ...     assert (a + a.T).abs().max() == 0
    >>> test_skew()
"""

from __future__ import annotations

import torch
from hypothesis import strategies as st
from torch import Tensor

__all__ = [
    "dims",
    "batch_sizes",
    "seeds",
    "matrices",
    "skew_symmetric_matrices",
    "well_conditioned_matrices",
    "time_spans",
    "vectors",
]


def dims(max_dim: int = 4) -> st.SearchStrategy[int]:
    """Dimensions from 1 to ``max_dim``."""
    return st.integers(min_value=1, max_value=max_dim)


def batch_sizes(max_batch: int = 8) -> st.SearchStrategy[int]:
    """Batch sizes from 1 to ``max_batch``."""
    return st.integers(min_value=1, max_value=max_batch)


def seeds() -> st.SearchStrategy[int]:
    """Seeds for ``torch.Generator``."""
    return st.integers(min_value=0, max_value=2**31 - 1)


def _entries(dim: int, bound: float) -> st.SearchStrategy[list[float]]:
    element = st.floats(min_value=-bound, max_value=bound, allow_nan=False, allow_infinity=False)
    return st.lists(element, min_size=dim * dim, max_size=dim * dim)


def matrices(
    dim: int, *, bound: float = 1.0, dtype: torch.dtype = torch.float64
) -> st.SearchStrategy[Tensor]:
    """Square matrices with entries in ``[-bound/dim, bound/dim]`` (norm <= bound)."""
    return _entries(dim, bound / dim).map(
        lambda values: torch.tensor(values, dtype=dtype).reshape(dim, dim)
    )


def skew_symmetric_matrices(
    dim: int, *, bound: float = 1.0, dtype: torch.dtype = torch.float64
) -> st.SearchStrategy[Tensor]:
    """Skew-symmetric matrices ``A = M - M^T`` (volume preserving: ``tr A = 0``)."""
    return matrices(dim, bound=bound / 2, dtype=dtype).map(lambda m: m - m.T)


def well_conditioned_matrices(
    dim: int, *, bound: float = 1.0, dtype: torch.dtype = torch.float64
) -> st.SearchStrategy[Tensor]:
    """Matrices ``A`` with ``||A|| <= bound`` and a non-zero trace in general.

    ``expm(A t)`` for ``|t| <= 1`` then has condition number at most
    ``exp(2 * bound)``, so closed forms stay accurate in float64.
    """
    return matrices(dim, bound=bound, dtype=dtype)


def vectors(
    shape: tuple[int, ...], *, bound: float = 2.0, dtype: torch.dtype = torch.float64
) -> st.SearchStrategy[Tensor]:
    """Tensors of the given shape with entries in ``[-bound, bound]``."""
    n = 1
    for s in shape:
        n *= s
    element = st.floats(min_value=-bound, max_value=bound, allow_nan=False, allow_infinity=False)
    return st.lists(element, min_size=n, max_size=n).map(
        lambda values: torch.tensor(values, dtype=dtype).reshape(shape)
    )


def time_spans(
    *, max_length: float = 1.0, min_length: float = 0.25, backward: bool | None = None
) -> st.SearchStrategy[tuple[float, float]]:
    """Pairs ``(t0, t1)`` with ``min_length <= |t1 - t0| <= max_length``.

    Arguments:
        backward: ``True`` for ``t1 < t0`` only, ``False`` for ``t1 > t0``
            only, ``None`` for either direction.
    """
    starts = st.floats(min_value=-1.0, max_value=1.0, allow_nan=False)
    lengths = st.floats(min_value=min_length, max_value=max_length, allow_nan=False)
    signs = st.sampled_from([1.0, -1.0] if backward is None else [-1.0 if backward else 1.0])
    return st.tuples(starts, lengths, signs).map(lambda v: (v[0], v[0] + v[2] * v[1]))
