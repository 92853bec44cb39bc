"""Optional protocols of special gradient paths that an integrator may offer.

A gradient strategy that needs more than :meth:`Integrator.integrate
<flowkit.interfaces.Integrator.integrate>` names a capability in its
``requires`` (decided by :func:`~flowkit.compat.check_compatibility`) and calls
the one method of the matching protocol. The backend that has the path
implements the method on its integrator class and declares the capability;
nothing else changes, so a new path is a new protocol here, not a new method
on every integrator.

Example:
    >>> from flowkit.interfaces import Integrator
    >>> class Plain(Integrator):
    ...     def integrate(self, func, y0, t): ...
    >>> class Lying(Plain):
    ...     checkpointable = True
    >>> missing_gradient_paths(Plain), missing_gradient_paths(Lying)
    ([], ['checkpointable'])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from torch import Tensor

from flowkit.solution import Solution
from flowkit.state import Dynamics, State

__all__ = [
    "GRADIENT_PATHS",
    "SupportsCheckpointing",
    "SupportsNativeAdjoint",
    "SupportsReversibleSolve",
    "missing_gradient_paths",
]


@runtime_checkable
class SupportsCheckpointing(Protocol):
    """Declared with ``checkpointable = True``."""

    def integrate_checkpointed(
        self, func: Dynamics, y0: State, t: Tensor, params: Sequence[Tensor]
    ) -> Solution:
        """Like ``integrate``, keeping only step states for the backward pass.

        Each step's internals are recomputed in the backward pass; the forward
        pass costs the same function evaluations as ``integrate``, and
        gradients reach ``y0`` and ``params`` (the tensors ``func`` depends
        on), equal to those of backpropagating through ``integrate`` to
        round-off.
        """


@runtime_checkable
class SupportsReversibleSolve(Protocol):
    """Declared with ``reversible = True``."""

    def integrate_reversible(
        self, func: Dynamics, y0: State, t: Tensor, params: Sequence[Tensor]
    ) -> Solution:
        """Solve with gradients from the algebraically reversible backward pass.

        Gradients reach ``y0`` and ``params``, the tensors ``func`` depends on.
        """


@runtime_checkable
class SupportsNativeAdjoint(Protocol):
    """Declared with ``native_adjoint = True``."""

    def integrate_native_adjoint(
        self, func: Dynamics, y0: State, t: Tensor, params: Sequence[Tensor]
    ) -> Solution:
        """Solve with gradients from the backend's own adjoint method."""


GRADIENT_PATHS: dict[str, type] = {
    "checkpointable": SupportsCheckpointing,
    "reversible": SupportsReversibleSolve,
    "native_adjoint": SupportsNativeAdjoint,
}
"""Capability flag -> the protocol a class declaring it must implement."""


def missing_gradient_paths(integrator: Any) -> list[str]:
    """The gradient-path capabilities ``integrator`` declares but does not implement.

    ``integrator`` is a class or an instance; an empty list means every
    declared path has its method (the protocol's own empty stub, inherited by
    a class that names the protocol as a base, does not count).
    """
    missing = []
    for flag, protocol in GRADIENT_PATHS.items():
        if not getattr(integrator, flag, False):
            continue
        methods = [name for name in vars(protocol) if name.startswith("integrate_")]
        for name in methods:
            found = getattr(integrator, name, None)
            # A class that names the protocol as a base but leaves its method
            # out inherits the protocol's empty stub: that is not an implementation.
            stub = getattr(found, "__func__", found) is vars(protocol)[name]
            if not callable(found) or stub:
                missing.append(flag)
                break
    return missing
