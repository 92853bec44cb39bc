"""Probability paths of flow matching: the straight conditional path and its velocity.

Given a coupled pair ``(x0, x1)`` (base at ``t = 0``, data at ``t = 1``, as in
flowkit's CNFs), the conditional path of width ``sigma`` is

    x_t = (1 - t) x0 + t x1 + sigma * eps,    eps ~ N(0, I),

and its conditional target velocity is ``u_t = x1 - x0`` (the noise term has
constant scale, so it adds no velocity). Regressing a field on ``u_t`` at
``x_t`` learns the marginal velocity ``E[x1 - x0 | x_t]``, whose flow carries
the base distribution to the (``sigma``-smoothed) data distribution.

References:
    Lipman et al., "Flow Matching for Generative Modeling", ICLR 2023.
    Tong et al., "Improving and generalizing flow-based generative models with
    minibatch optimal transport", TMLR 2024 (the ``sigma`` path of I-CFM).
    Liu et al., "Flow Straight and Fast: Learning to Generate and Transfer Data
    with Rectified Flow", ICLR 2023.

Example:
    >>> import torch
    >>> x0, x1 = torch.zeros(2, 3), torch.ones(2, 3)
    >>> xt, ut = straight_path(x0, x1, torch.tensor([0.25, 1.0]))
    >>> xt[:, 0].tolist(), ut[:, 0].tolist()
    ([0.25, 1.0], [1.0, 1.0])
"""

from __future__ import annotations

import math
import numbers

import torch
from torch import Tensor

__all__ = ["check_sigma", "sample_times", "straight_path"]


def check_sigma(sigma: object) -> float:
    """``sigma`` as a float, checked to be finite and non-negative.

    Arguments:
        sigma: the width of the conditional path (a real number, not a bool).

    Raises:
        TypeError: if ``sigma`` is not a real number.
        ValueError: if it is negative or not finite.

    Example:
        >>> check_sigma(-0.1)
        Traceback (most recent call last):
        ...
        ValueError: sigma (the path width) must be finite and >= 0, got -0.1.
    """
    if isinstance(sigma, bool) or not isinstance(sigma, numbers.Real):
        raise TypeError(f"sigma must be a real number, got {sigma!r}.")
    value = float(sigma)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"sigma (the path width) must be finite and >= 0, got {sigma!r}.")
    return value


def sample_times(
    batch: int,
    *,
    generator: torch.Generator | None = None,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """One time per sample, ``t ~ U[0, 1)`` i.i.d., shape ``(batch,)``.

    Arguments:
        batch: the number of samples.
        generator: the random generator (``None``: torch's global one).
        dtype, device: of the result (defaults: torch's defaults).

    Example:
        >>> t = sample_times(4, generator=torch.Generator().manual_seed(0))
        >>> t.shape, bool(((0 <= t) & (t < 1)).all())
        (torch.Size([4]), True)
    """
    return torch.rand(batch, generator=generator, dtype=dtype, device=device)


def straight_path(
    x0: Tensor,
    x1: Tensor,
    t: Tensor,
    *,
    sigma: float = 0.0,
    noise: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """The point ``x_t`` on the straight conditional path and its velocity ``x1 - x0``.

    Arguments:
        x0: base samples, shape ``(batch, dim)``.
        x1: data samples paired with them, the same shape.
        t: one time per sample, shape ``(batch,)`` (or a scalar for all).
        sigma: the path width; ``0`` gives the deterministic straight line.
        noise: the ``eps`` to use, shape ``(batch, dim)``; drawn from ``N(0, I)``
            with ``generator`` when ``None`` and ``sigma > 0``.
        generator: the random generator for ``eps``.

    Returns:
        ``(x_t, u_t)``, both of shape ``(batch, dim)``.

    Raises:
        ValueError: for a negative ``sigma``, or ``t`` / ``noise`` of the wrong shape.
    """
    sigma = check_sigma(sigma)
    t = torch.as_tensor(t, dtype=x0.dtype, device=x0.device)
    if t.ndim == 0:
        t = t.expand(x0.shape[0])
    if t.shape != (x0.shape[0],):
        raise ValueError(
            f"t must hold one time per sample, shape ({x0.shape[0]},), got {tuple(t.shape)}."
        )
    tc = t.unsqueeze(-1)
    xt = (1 - tc) * x0 + tc * x1
    if sigma > 0:
        if noise is None:
            noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype, device=x0.device)
        elif noise.shape != x0.shape:
            raise ValueError(
                f"noise must have the samples' shape {tuple(x0.shape)}, got {tuple(noise.shape)}."
            )
        xt = xt + sigma * noise
    return xt, x1 - x0
