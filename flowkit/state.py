"""States of an ODE solve: a tensor or a tuple of tensors, and helpers for both.

The CNF integrates the augmented state ``(x, delta_logp, ...)``; every
integrator and gradient strategy accepts a tuple state. The helpers here
convert between the two forms so that components need not special-case tuples.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Union

import torch
from torch import Tensor

__all__ = [
    "Dynamics",
    "State",
    "all_finite",
    "as_tuple",
    "check_state",
    "flatten_state",
    "like",
    "unflatten_state",
]

State = Union[Tensor, tuple[Tensor, ...]]
"""A state: one tensor, or a tuple of tensors integrated together."""

Dynamics = Callable[[Tensor, State], State]
"""A right-hand side ``g(t, y)`` returning a state of the same structure as ``y``."""


def as_tuple(y: State) -> tuple[Tensor, ...]:
    """The leaves of ``y`` as a tuple (a single tensor becomes a 1-tuple)."""
    return y if isinstance(y, tuple) else (y,)


def like(template: State, leaves: tuple[Tensor, ...]) -> State:
    """Rebuild a state with the structure of ``template`` from ``leaves``."""
    return leaves if isinstance(template, tuple) else leaves[0]


def flatten_state(y: State) -> Tensor:
    """Concatenate the leaves of ``y`` into one 1-D tensor."""
    return torch.cat([leaf.reshape(-1) for leaf in as_tuple(y)])


def unflatten_state(flat: Tensor, template: State) -> State:
    """Inverse of :func:`flatten_state`, using ``template`` for shapes."""
    leaves = []
    offset = 0
    for leaf in as_tuple(template):
        n = leaf.numel()
        leaves.append(flat[offset : offset + n].view_as(leaf))
        offset += n
    return like(template, tuple(leaves))


def check_state(y0: object, *, what: str = "y0") -> State:
    """Validate that ``y0`` is a floating tensor or a non-empty tuple of them.

    Raises:
        TypeError: with a message naming the offending leaf.
    """
    leaves = y0 if isinstance(y0, tuple) else (y0,)
    if isinstance(y0, tuple) and not y0:
        raise TypeError(f"{what} is an empty tuple; pass a tensor or a tuple of tensors.")
    for i, leaf in enumerate(leaves):
        name = f"{what}[{i}]" if isinstance(y0, tuple) else what
        if not isinstance(leaf, Tensor):
            raise TypeError(
                f"{name} must be a torch.Tensor, got {type(leaf).__name__}; "
                "states are a tensor or a tuple of tensors."
            )
        if not leaf.is_floating_point():
            raise TypeError(
                f"{name} has dtype {leaf.dtype}; ODE states must be floating point "
                "(convert with .double() or .float())."
            )
    return y0  # type: ignore[return-value]


def all_finite(leaves: tuple[Tensor, ...]) -> bool:
    """Whether every leaf holds only finite values (one reduction per leaf when they do).

    A finite sum proves every element finite (a NaN or an infinity makes the
    sum NaN or infinite); only a sum that is not finite, which a large finite
    state may also give by overflow, is followed by the element-wise test.
    """
    for x in leaves:
        x = x.detach()
        if not math.isfinite(float(x.sum())) and not bool(torch.isfinite(x).all()):
            return False
    return True
