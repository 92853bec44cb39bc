"""Exception classes of flowkit: one per failure a user can act on.

Every message says what went wrong and how to fix it. All classes derive from
:class:`FlowkitError`, so ``except FlowkitError`` catches everything flowkit
raises on purpose.
"""

from __future__ import annotations

__all__ = [
    "FlowkitError",
    "IncompatibleComponentsError",
    "IntegrationError",
    "InvalidInputError",
    "MaxStepsExceededError",
    "NonFiniteStateError",
    "PluginConflictError",
    "PluginContractError",
    "PluginLoadError",
    "StepSizeUnderflowError",
    "UnknownComponentError",
]


class FlowkitError(Exception):
    """Base class of every error flowkit raises deliberately."""


class UnknownComponentError(FlowkitError, KeyError):
    """A component name that no installed plugin registered.

    Subclasses :class:`KeyError` so that code treating the registry as a mapping
    keeps working. The message lists the names that exist and the closest ones.
    """

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class PluginConflictError(FlowkitError):
    """Two plugins registered the same name (or alias) for one kind of component.

    Raised where the name is used; the message names both plugins and the way
    out (block one, or declare ``replaces=``). Every other name keeps working.
    """


class PluginLoadError(FlowkitError):
    """A plugin that cannot be used: it failed to import, raised inside a hook,
    or its factory built something that is not a component of its kind.

    When the registry is built such plugins are not raised about but listed in
    ``Registry.broken`` (and by ``flowkit list``); this is raised where a broken
    component is used.
    """


class IncompatibleComponentsError(FlowkitError, ValueError):
    """A combination of components whose declared capabilities do not fit together."""


class IntegrationError(FlowkitError, RuntimeError):
    """An ODE solve that could not be completed.

    Attributes:
        t: the time the solver had reached when it stopped (a float), or ``None``.
    """

    def __init__(self, message: str, *, t: float | None = None) -> None:
        super().__init__(message)
        self.t = t


class StepSizeUnderflowError(IntegrationError):
    """The adaptive step size fell below ``min_step`` or below round-off."""


class MaxStepsExceededError(IntegrationError):
    """The solver used up its ``max_steps`` budget before reaching the end time."""


class NonFiniteStateError(IntegrationError):
    """NaN or Inf appeared in the state or in the vector field's output."""


class InvalidInputError(FlowkitError, ValueError):
    """Input data of the wrong shape, dtype, device, or with NaN/Inf values."""


class PluginContractError(FlowkitError, RuntimeError):
    """A component (integrator, gradient strategy, vector field) broke its documented contract.

    Raised by the one solve path and the CNF when what a plugin returns does not
    have the shape, dtype, device or finiteness its contract promises, so that a
    broken plugin fails loudly instead of yielding silently wrong results.

    Attributes:
        component: the name of the offending component (registered name or class).
        contract: the clause of the contract that was broken, in words.
    """

    def __init__(self, message: str, *, component: str = "", contract: str = "") -> None:
        super().__init__(message)
        self.component = component
        self.contract = contract
