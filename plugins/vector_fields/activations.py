"""Activations of the built-in fields, chosen by name, with their derivatives.

The derivatives let a field accumulate its exact divergence through its layers.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

__all__ = ["ACTIVATIONS", "ACTIVATION_DERIVATIVES", "make_activation"]

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "tanh": nn.Tanh,
    "softplus": nn.Softplus,
    "relu": nn.ReLU,
    "elu": nn.ELU,
    "silu": nn.SiLU,
    "swish": nn.SiLU,
    "sigmoid": nn.Sigmoid,
    "gelu": nn.GELU,
}
"""Activation names accepted by the fields' ``activation`` option."""


def _sigmoid_derivative(a: Tensor) -> Tensor:
    s = torch.sigmoid(a)
    return s * (1 - s)


def _silu_derivative(a: Tensor) -> Tensor:
    s = torch.sigmoid(a)
    return s * (1 + a * (1 - s))


def _gelu_derivative(a: Tensor) -> Tensor:
    cdf = 0.5 * (1 + torch.erf(a / math.sqrt(2)))
    return cdf + a * torch.exp(-0.5 * a * a) / math.sqrt(2 * math.pi)


ACTIVATION_DERIVATIVES: dict[str, Callable[[Tensor], Tensor]] = {
    "tanh": lambda a: 1 - torch.tanh(a).pow(2),
    "softplus": torch.sigmoid,
    "relu": lambda a: (a > 0).to(a.dtype),
    "elu": lambda a: torch.where(a > 0, torch.ones_like(a), torch.exp(a)),
    "silu": _silu_derivative,
    "swish": _silu_derivative,
    "sigmoid": _sigmoid_derivative,
    "gelu": _gelu_derivative,
}
"""The derivative of each activation of :data:`ACTIVATIONS` (default parameters)."""


def make_activation(name: str) -> nn.Module:
    """Build the activation module called ``name``.

    Raises:
        ValueError: for an unknown name, listing the valid ones.
    """
    if not isinstance(name, str) or name.lower() not in ACTIVATIONS:
        raise ValueError(
            f"Unknown activation {name!r}; choose one of: {', '.join(sorted(ACTIVATIONS))}."
        )
    return ACTIVATIONS[name.lower()]()
