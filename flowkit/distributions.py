"""Base densities: the standard normal log-density, written once.

Every place in flowkit that needs ``log N(z; 0, I)`` (the CNF's base
distribution, the closed-form test problems, the benchmark peers and suites)
calls :func:`standard_normal_log_prob`, so the constant and the sign live in
one place.
"""

from __future__ import annotations

import math

from torch import Tensor

__all__ = ["standard_normal_log_prob"]

_LOG_2PI = math.log(2 * math.pi)


def standard_normal_log_prob(z: Tensor) -> Tensor:
    """``log N(z; 0, I)`` per row: ``-|z|^2 / 2 - d log(2 pi) / 2`` over the last axis.

    Arguments:
        z: points of shape ``(..., d)``.

    Returns:
        The log-density of shape ``(...)``, in ``z``'s dtype and device,
        differentiable in ``z``.
    """
    return -0.5 * z.pow(2).sum(-1) - 0.5 * z.shape[-1] * _LOG_2PI
