"""Activations of the built-in fields, chosen by name, with their derivatives.

The derivatives let a field accumulate its exact divergence through its layers.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

__all__ = [
    "ACTIVATIONS",
    "ACTIVATION_DERIVATIVES",
    "SLOPES_FROM_VALUES",
    "make_activation",
    "value_and_slope",
]

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


SLOPES_FROM_VALUES: dict[str, Callable[[Tensor], Tensor]] = {
    "tanh": lambda y: 1 - y * y,
    "sigmoid": lambda y: y * (1 - y),
}
"""Activations whose derivative is cheaper from their value ``y`` than from their input."""


def value_and_slope(name: str, activation: nn.Module, pre: Tensor) -> tuple[Tensor, Tensor]:
    """``(activation(pre), activation'(pre))`` for the activation called ``name``.

    The slope comes from the value where that is cheaper (``tanh``, ``sigmoid``).

    Arguments:
        name: the activation's name (a key of :data:`ACTIVATIONS`, any case).
        activation: the activation module, as :func:`make_activation` built it.
        pre: the pre-activation.

    Returns:
        The activation's value and derivative at ``pre``, each of ``pre``'s shape.

    Example:
        >>> y, slope = value_and_slope("tanh", make_activation("tanh"), torch.zeros(2))
        >>> slope
        tensor([1., 1.])
    """
    key = name.lower()
    value = activation(pre)
    from_value = SLOPES_FROM_VALUES.get(key)
    return value, (from_value(value) if from_value else ACTIVATION_DERIVATIVES[key](pre))
