"""Sample-quality figures: how far a model's samples are from held-out data.

* :func:`energy_distance`: Székely and Rizzo's (squared) energy distance
  ``2 E|X - Y| - E|X - X'| - E|Y - Y'|`` with Euclidean norms; the V-statistic
  (default, ``>= 0``, exactly ``0`` for identical samples) or the unbiased
  U-statistic (``unbiased=True``, mean ``0`` for two samples of one distribution).
* :func:`sliced_wasserstein`: the sliced 2-Wasserstein distance
  ``(mean_k W2(theta_k . X, theta_k . Y)^2)^(1/2)`` over random unit directions
  ``theta_k``, each 1-d W2 computed exactly from the empirical quantile functions
  (so the two samples may differ in size).

Both take two samples of shape ``(n, dim)`` and ``(m, dim)`` on any device, in
their common floating dtype (float64 when either is float64), and bound memory by
working on blocks of rows. Sums are accumulated in float64.

References:
    Székely and Rizzo, "Energy statistics: A class of statistics based on
    distances", J. Statist. Plann. Inference 143 (2013).
    Bonneel, Rabin, Peyré and Pfister, "Sliced and Radon Wasserstein barycenters
    of measures", J. Math. Imaging Vis. 51 (2015).

Example:
    >>> import torch
    >>> x = torch.randn(100, 2, generator=torch.Generator().manual_seed(0))
    >>> float(energy_distance(x, x))
    0.0
    >>> round(float(sliced_wasserstein(x[:, :1], x[:, :1] + 3.0, n_projections=4)), 6)
    3.0
"""

from __future__ import annotations

import torch
from torch import Tensor

from flowkit.errors import InvalidInputError

__all__ = ["energy_distance", "sliced_wasserstein"]


def _check_samples(x: object, y: object) -> tuple[Tensor, Tensor]:
    """Both samples as 2-d tensors of one floating dtype and device, or a clear error."""
    for name, value in (("x", x), ("y", y)):
        if not isinstance(value, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor of shape (n, dim), got {type(value)}.")
        if value.ndim != 2:
            raise InvalidInputError(
                f"{name} must have shape (n, dim), got {tuple(value.shape)}; "
                "reshape a 1-d sample with x[:, None]."
            )
        if value.shape[0] == 0:
            raise InvalidInputError(f"{name} is empty (0 rows); give at least one sample.")
        if value.shape[1] == 0:
            raise InvalidInputError(f"{name} has 0 columns; give samples with dim >= 1.")
    assert isinstance(x, Tensor) and isinstance(y, Tensor)
    if x.shape[1] != y.shape[1]:
        raise InvalidInputError(
            f"x and y must have the same dimension, got {x.shape[1]} and {y.shape[1]}."
        )
    if x.device != y.device:
        raise InvalidInputError(
            f"x and y must be on one device, got {x.device} and {y.device}; move one with .to()."
        )
    dtype = torch.promote_types(x.dtype, y.dtype)
    if not dtype.is_floating_point:
        dtype = torch.get_default_dtype()
    x, y = x.to(dtype), y.to(dtype)
    if not (torch.isfinite(x).all() and torch.isfinite(y).all()):
        raise InvalidInputError("x and y must be finite; found NaN or Inf values.")
    return x, y


def _check_block(block: object) -> int:
    if isinstance(block, bool) or not isinstance(block, int) or block < 1:
        raise ValueError(f"block must be a positive integer (rows per block), got {block!r}.")
    return block


def _distance_sum(a: Tensor, b: Tensor, block: int) -> Tensor:
    """``sum_ij |a_i - b_j|`` in float64, computed ``block`` rows of ``a`` at a time."""
    total = torch.zeros((), dtype=torch.float64, device=a.device)
    for rows in a.split(block):
        # Direct differences, not the matrix-product shortcut, which loses digits to cancellation.
        distances = torch.cdist(rows, b, compute_mode="donot_use_mm_for_euclid_dist")
        total = total + distances.to(torch.float64).sum()
    return total


def energy_distance(x: Tensor, y: Tensor, *, unbiased: bool = False, block: int = 2048) -> Tensor:
    """The squared energy distance between the samples ``x`` and ``y`` (Székely & Rizzo).

    ``D^2 = 2 E|X - Y| - E|X - X'| - E|Y - Y'|`` with the Euclidean norm; it is
    ``0`` if and only if the two distributions are equal (with finite first
    moments). The expectations are replaced by sample means:

    * ``unbiased=False`` (default), the V-statistic: every mean runs over all
      pairs, the zero diagonal included. It is ``>= 0`` and exactly ``0`` for
      identical samples, but biased upwards by about
      ``E|X - X'| / n + E|Y - Y'| / m``.
    * ``unbiased=True``, the U-statistic: the within-sample means run over pairs
      ``i != j``. Its expectation is exactly ``D^2`` (so ``0`` for two samples of
      one distribution), and it can be negative. Needs two rows in each sample.

    Arguments:
        x: a sample of shape ``(n, dim)``.
        y: a sample of shape ``(m, dim)``, the same ``dim``, device.
        unbiased: the U-statistic instead of the V-statistic.
        block: rows per block of pairwise distances (memory ``block * max(n, m)``).

    Returns:
        A 0-d tensor in the samples' common floating dtype.

    Raises:
        TypeError: if ``x`` or ``y`` is not a tensor.
        InvalidInputError: for a sample that is not 2-d, empty or not finite,
            dimensions or devices that differ, or (unbiased) a one-row sample.
        ValueError: for a block that is not a positive integer.
    """
    x, y = _check_samples(x, y)
    block = _check_block(block)
    n, m = x.shape[0], y.shape[0]
    if unbiased and min(n, m) < 2:
        raise InvalidInputError(
            f"The unbiased energy distance needs at least 2 rows in each sample, got {n} and {m}; "
            "use unbiased=False or give more samples."
        )
    xx_pairs = n * (n - 1) if unbiased else n * n
    yy_pairs = m * (m - 1) if unbiased else m * m
    xy = _distance_sum(x, y, block) / (n * m)
    xx = _distance_sum(x, x, block) / xx_pairs
    yy = _distance_sum(y, y, block) / yy_pairs
    value = 2 * xy - xx - yy
    if not unbiased:
        value = value.clamp_min(0.0)  # >= 0 in exact arithmetic; drop rounding below it
    return value.to(x.dtype)


def _quantile_w2_squared(px: Tensor, py: Tensor) -> Tensor:
    """Exact squared 1-d W2 per column between the empirical laws of ``px`` and ``py``.

    ``px`` is ``(n, k)``, ``py`` ``(m, k)``: column ``j`` holds the projections on
    direction ``j``. ``W2^2 = integral_0^1 (F^-1(u) - G^-1(u))^2 du`` of the two
    step quantile functions, summed over the intervals between their jumps.
    """
    n, m = px.shape[0], py.shape[0]
    sx, sy = px.sort(dim=0).values, py.sort(dim=0).values
    if n == m:
        return ((sx - sy).to(torch.float64) ** 2).mean(dim=0)
    grid = torch.cat(
        [
            torch.arange(1, n + 1, dtype=torch.float64, device=px.device) / n,
            torch.arange(1, m + 1, dtype=torch.float64, device=px.device) / m,
        ]
    ).unique()  # sorted right ends of the intervals, 1 included once
    left = torch.cat([grid.new_zeros(1), grid[:-1]])
    width = grid - left
    middle = (grid + left) / 2
    ix = (middle * n).floor().long().clamp_max(n - 1)
    iy = (middle * m).floor().long().clamp_max(m - 1)
    diff = (sx[ix] - sy[iy]).to(torch.float64)
    return (width[:, None] * diff**2).sum(dim=0)


def sliced_wasserstein(
    x: Tensor,
    y: Tensor,
    n_projections: int = 128,
    generator: torch.Generator | None = None,
    *,
    block: int = 64,
) -> Tensor:
    """The sliced 2-Wasserstein distance between the samples ``x`` and ``y``.

    ``SW2 = (mean_k W2(theta_k . x, theta_k . y)^2)^(1/2)``, where the
    ``theta_k`` are ``n_projections`` directions drawn uniformly on the unit
    sphere (normalised Gaussian vectors from ``generator``, on the samples'
    device) and each 1-d ``W2`` is exact between the two empirical laws (any
    sizes ``n`` and ``m``). It is the Monte Carlo estimate of the sliced W2,
    ``(E_theta W2^2)^(1/2)``; in one dimension the directions are ``+-1`` and it
    is the exact W2 between the two empirical laws. Same unit as the data.

    Arguments:
        x: a sample of shape ``(n, dim)``.
        y: a sample of shape ``(m, dim)``, the same ``dim``, device.
        n_projections: the number of random directions, ``>= 1``.
        generator: the random source of the directions (``None``: torch's global
            one); a ``torch.Generator`` on the samples' device.
        block: directions projected at once (memory ``block * (n + m)``).

    Returns:
        A 0-d tensor in the samples' common floating dtype.

    Raises:
        TypeError: if ``x`` or ``y`` is not a tensor.
        InvalidInputError: for a sample that is not 2-d, empty or not finite,
            or dimensions or devices that differ.
        ValueError: for ``n_projections`` or ``block`` not a positive integer.
    """
    x, y = _check_samples(x, y)
    block = _check_block(block)
    if isinstance(n_projections, bool) or not isinstance(n_projections, int) or n_projections < 1:
        raise ValueError(f"n_projections must be a positive integer, got {n_projections!r}.")
    directions = torch.randn(
        x.shape[1], n_projections, generator=generator, dtype=x.dtype, device=x.device
    )
    directions = directions / directions.norm(dim=0, keepdim=True)
    total = torch.zeros((), dtype=torch.float64, device=x.device)
    for theta in directions.split(block, dim=1):
        total = total + _quantile_w2_squared(x @ theta, y @ theta).sum()
    return (total / n_projections).sqrt().to(x.dtype)
