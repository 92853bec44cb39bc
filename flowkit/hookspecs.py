"""The public plugin API: pluggy markers and one hook specification per kind.

A plugin is a module (or object) with functions marked ``@flowkit.hookimpl``
whose names are the hook names below. Each hook receives a ``register``
callback with the signature::

    register(name, factory, *, aliases=(), replaces=None)

``name`` is a lower_snake name (dots allowed for namespaces, as in
``torchdiffeq.dopri5``); ``factory`` is a class whose keyword arguments are the
component's options, and whose class attributes declare its capabilities;
``aliases`` are further names resolving to this one; ``replaces`` names an
existing component this one supersedes on purpose.

The factory class must subclass the kind's abstract base from
:mod:`flowkit.interfaces` (for vector fields: any ``nn.Module`` whose
``forward`` takes ``(t, x)``) and implement its abstract methods; instances are
refused. A function building the component is accepted too; what it builds is
checked when it is created. ``register`` raises ``TypeError`` or ``ValueError``
with the reason for anything it refuses, and the plugin is then reported as
broken with nothing of that hook registered (see :mod:`flowkit.kinds`).

A name already registered by another plugin is not an error here: that name
is withheld and raises :class:`~flowkit.errors.PluginConflictError` where it is
used, until one plugin is blocked (``FLOWKIT_BLOCK_PLUGINS``) or declares
``replaces=``.

Plugins are discovered through the ``flowkit`` entry-point group. Built-in
plugins are registered through these same hooks.

Example:
    >>> import flowkit
    >>> @flowkit.hookimpl
    ... def flowkit_register_integrators(register):
    ...     pass
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import pluggy

__all__ = [
    "ENTRY_POINT_GROUP",
    "PROJECT_NAME",
    "Register",
    "flowkit_register_gradient_strategies",
    "flowkit_register_integrators",
    "flowkit_register_objectives",
    "flowkit_register_sde_integrators",
    "flowkit_register_sdes",
    "flowkit_register_regularizers",
    "flowkit_register_trace_estimators",
    "flowkit_register_vector_fields",
    "hookimpl",
    "hookspec",
]

PROJECT_NAME = "flowkit"
"""The pluggy project name; hook implementations are marked with it."""

ENTRY_POINT_GROUP = "flowkit"
"""The entry-point group through which installed plugins are discovered."""

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


class Register(Protocol):
    """The callback each registration hook receives."""

    def __call__(
        self,
        name: str,
        factory: Callable[..., Any],
        *,
        aliases: tuple[str, ...] | list[str] = (),
        replaces: str | None = None,
    ) -> None: ...


@hookspec
def flowkit_register_vector_fields(register: Register) -> None:
    """Register vector fields: ``nn.Module`` classes computing ``f(t, x)``.

    Factories should subclass :class:`flowkit.interfaces.VectorField`, which is
    how a field declares capabilities; any ``nn.Module`` subclass whose
    ``forward`` takes ``(t, x)`` is accepted as a field without a closed-form
    divergence.
    """


@hookspec
def flowkit_register_integrators(register: Register) -> None:
    """Register ODE integrators.

    Factories must subclass :class:`flowkit.interfaces.Integrator` and declare
    ``order``, ``adaptive``, ``reversible``, ``native_adjoint`` and
    ``checkpointable`` as class attributes.
    """


@hookspec
def flowkit_register_trace_estimators(register: Register) -> None:
    """Register trace (divergence) estimators.

    Factories must subclass :class:`flowkit.interfaces.TraceEstimator` and
    declare ``stochastic`` and ``requires_divergence``.
    """


@hookspec
def flowkit_register_gradient_strategies(register: Register) -> None:
    """Register gradient strategies (backprop, adjoints, checkpointing, ...).

    Factories must subclass :class:`flowkit.interfaces.GradientStrategy` and
    declare in ``requires`` the integrator capabilities they need.
    """


@hookspec
def flowkit_register_regularizers(register: Register) -> None:
    """Register training regularizers integrated alongside the CNF state.

    Factories must subclass :class:`flowkit.interfaces.Regularizer`.
    """


@hookspec
def flowkit_register_objectives(register: Register) -> None:
    """Register training objectives: the loss of a model on one batch.

    Factories must subclass :class:`flowkit.interfaces.Objective` and declare
    ``simulation_free``, ``requires_trace``, ``accepts_context`` and
    ``requires_score_model``; options are the constructor's keyword arguments.
    """


@hookspec
def flowkit_register_sdes(register: Register) -> None:
    """Register noising SDEs for score-based models (``vp``, ``subvp``, ``ve``, ...).

    Factories must subclass :class:`flowkit.interfaces.SDE`; options are the
    constructor's keyword arguments.
    """


@hookspec
def flowkit_register_sde_integrators(register: Register) -> None:
    """Register SDE integrators: fixed-step solvers that take a diffusion term.

    Factories must subclass :class:`flowkit.interfaces.SDEIntegrator` and
    declare ``strong_order``, ``additive_strong_order``, ``weak_order`` and
    ``sde_type``.
    """
