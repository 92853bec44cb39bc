"""Built-in gradient strategies: how gradients pass through a solve.

* ``backprop``: exact gradient of the computed solution; memory grows linearly
  with the number of steps.
* ``adjoint``: flowkit's solver-agnostic continuous adjoint (any integrator);
  gradient of the exact flow, approximate to the solver's tolerance; memory
  constant in the number of steps (the large logic is in :mod:`flowkit.adjoint`).
* ``checkpoint``: exact gradient, recomputing each step's internals in the
  backward pass; memory grows with the steps by one state per step. Needs
  ``checkpointable``.
* ``reversible``: exact gradient with constant memory, for integrators declaring
  ``reversible`` (``torchsde.reversible_heun``).
* ``torchdiffeq_adjoint``: torchdiffeq's own adjoint, for integrators declaring
  ``native_adjoint``; for comparisons.

``exact_discrete_gradient`` (a plain class attribute, not a capability) marks
the strategies whose gradient is that of the computed solution to round-off.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from torch import Tensor

from flowkit.adjoint import adjoint_solve, resolve_params
from flowkit.errors import IncompatibleComponentsError
from flowkit.hookspecs import Register, hookimpl
from flowkit.interfaces import (
    GradientStrategy,
    Integrator,
    SupportsCheckpointing,
    SupportsNativeAdjoint,
    SupportsReversibleSolve,
    missing_gradient_paths,
)
from flowkit.registry import Registry
from flowkit.solution import Solution
from flowkit.state import Dynamics, State

__all__ = [
    "Adjoint",
    "Backprop",
    "Checkpoint",
    "Reversible",
    "TorchdiffeqAdjoint",
    "flowkit_register_gradient_strategies",
]


class Backprop(GradientStrategy):
    """Differentiate through the solver's operations (discretise-then-optimise).

    The gradient is exact for the computed solution, and reaches ``t`` too.

    When not to use it: memory grows linearly with the number of steps, since
    every step's graph is kept; prefer ``adjoint``, ``checkpoint`` or
    ``reversible`` for long solves or large batches.
    """

    exact_discrete_gradient: ClassVar[bool] = True

    def solve(
        self,
        integrator: Integrator,
        func: Dynamics,
        y0: State,
        t: Tensor,
        *,
        params: Sequence[Tensor] | None = None,
    ) -> Solution:
        """Run the integrator with autograd recording every operation."""
        return integrator.integrate(func, y0, t)


class Adjoint(GradientStrategy):
    """The solver-agnostic continuous adjoint (optimise-then-discretise).

    The forward solve keeps no graph; the backward pass integrates the adjoint
    system from ``t[-1]`` back to ``t[0]`` with any integrator that can run
    backward in time (see :mod:`flowkit.adjoint`). Gradients reach ``y0``,
    ``params`` and the times ``t``.

    When not to use it: the gradient is that of the exact ODE solution,
    approximated to the solver's tolerance, not the exact gradient of the
    computed solution, so it is noisier than ``backprop``'s at loose
    tolerances; the backward solve re-integrates the state backward, which is
    inaccurate for dynamics that are unstable backward in time (strongly
    contracting fields); and it costs an extra solve. Prefer ``backprop`` when
    memory allows, ``checkpoint`` for exact gradients with less memory.

    Arguments:
        params: the tensors to differentiate with respect to (default: the
            ``params`` given to the solve, else every parameter of ``func``
            when it is an ``nn.Module``); tensors that do not require gradients
            are skipped.
        backward_integrator: the integrator of the backward solve, a registered
            name or an instance (default: the forward integrator).
        backward_options: options for ``backward_integrator`` given by name;
            without ``backward_integrator``, the forward integrator's registered
            name is rebuilt with these options (e.g. other tolerances).
        seminorm: leave the parameter adjoint out of the backward step-size
            control (Kidger et al. 2021); needs an adaptive backward integrator
            that takes a ``norm`` option.
        registry: the registry that resolves ``backward_integrator`` names
            (default: the registry that builds the strategy by name, or the
            one of the CNF, ``odeint`` or ``solve`` it is handed to).

    Raises:
        TypeError: for an invalid option.

    References:
        Chen et al. (2018). Neural Ordinary Differential Equations. NeurIPS.
        Kidger, Chen, Lyons (2021). "Hey, that's not an ODE": Faster ODE
        Adjoints via Seminorms. ICML.
    """

    constant_memory = True

    def __init__(
        self,
        *,
        params: Sequence[Tensor] | None = None,
        backward_integrator: str | Integrator | None = None,
        backward_options: dict[str, Any] | None = None,
        seminorm: bool = False,
        registry: Registry | None = None,
    ) -> None:
        if backward_integrator is not None and not isinstance(
            backward_integrator, (str, Integrator)
        ):
            raise TypeError(
                "backward_integrator must be a registered integrator name or an Integrator "
                f"instance, got {type(backward_integrator).__name__}."
            )
        if backward_options is not None and isinstance(backward_integrator, Integrator):
            raise TypeError(
                "backward_options were given with a backward_integrator instance; configure "
                "the instance itself, or pass its registered name."
            )
        if not isinstance(seminorm, bool):
            raise TypeError(f"seminorm must be True or False, got {seminorm!r}.")
        self.params = None if params is None else list(params)
        self.backward_integrator = backward_integrator
        self.backward_options = dict(backward_options or {})
        self.seminorm = seminorm
        self.registry = registry

    def _backward(self, integrator: Integrator) -> Integrator | None:
        if isinstance(self.backward_integrator, Integrator):
            return self.backward_integrator
        name = self.backward_integrator
        if name is None:
            if not self.backward_options:
                return None
            name = getattr(integrator, "registry_name", None)
            if name is None:
                raise TypeError(
                    "backward_options need a backward_integrator name: the forward integrator "
                    f"{type(integrator).__name__} was not built from the registry."
                )
        if self.registry is None:
            raise TypeError(
                f"backward_integrator {name!r} is a name, but this adjoint has no registry to "
                "resolve it in: pass registry=..., pass an Integrator instance, or hand the "
                "strategy to CNF, odeint or solve, which give it theirs."
            )
        return self.registry.create("integrator", name, **self.backward_options)  # type: ignore[no-any-return]

    def solve(
        self,
        integrator: Integrator,
        func: Dynamics,
        y0: State,
        t: Tensor,
        *,
        params: Sequence[Tensor] | None = None,
    ) -> Solution:
        """Solve forward without a graph; gradients come from the adjoint solve."""
        chosen = self.params if self.params is not None else params
        return adjoint_solve(
            integrator,
            func,
            y0,
            t,
            params=resolve_params(func, chosen),
            backward_integrator=self._backward(integrator),
            seminorm_control=self.seminorm,
        )


class _GradientPath(GradientStrategy):
    """A strategy that runs a special gradient path offered by the integrator's backend.

    The path is an optional protocol of :mod:`flowkit.interfaces.gradient_paths`
    that the backend's integrator implements and declares with the capability
    named in ``requires`` (the one flag :func:`~flowkit.compat.check_compatibility`
    decides from). Subclasses set ``requires``, ``protocol`` and ``alternative``
    (what to choose instead); the strategy calls the protocol's one method.
    Parameters are resolved as for ``adjoint``.
    """

    protocol: ClassVar[type]
    alternative: ClassVar[str]

    def __init__(self, *, params: Sequence[Tensor] | None = None) -> None:
        self.params = None if params is None else list(params)

    def solve(
        self,
        integrator: Integrator,
        func: Dynamics,
        y0: State,
        t: Tensor,
        *,
        params: Sequence[Tensor] | None = None,
    ) -> Solution:
        """Run the integrator's gradient path with the resolved parameters.

        Raises:
            IncompatibleComponentsError: when the integrator does not declare
                the capability or does not implement its protocol.
        """
        (flag,) = self.requires
        declared = getattr(integrator, flag, False)
        implemented = isinstance(integrator, self.protocol) and flag not in (
            missing_gradient_paths(integrator)
        )
        if not declared or not implemented:
            why = (
                f"declares {flag}={declared!r}"
                if not declared
                else f"declares {flag}=True but does not implement {self.protocol.__name__}"
            )
            raise IncompatibleComponentsError(
                f"Gradient strategy {type(self).__name__} needs an integrator with {flag}=True "
                f"(implementing {self.protocol.__name__}); {type(integrator).__name__} {why}. "
                f"Choose {self.alternative}."
            )
        chosen = self.params if self.params is not None else params
        (method,) = [name for name in vars(self.protocol) if name.startswith("integrate_")]
        run = getattr(integrator, method)  # the protocol's one method, checked above
        return run(func, y0, t, resolve_params(func, chosen))  # type: ignore[no-any-return]


class Checkpoint(_GradientPath):
    """Backpropagation with recomputation: only the solver's step states are kept.

    Each accepted step is one autograd node that keeps its input state and
    recomputes the step's internals (the stages, the field's activations, a
    trace estimator's graphs) in the backward pass, so the gradient equals
    ``backprop``'s to round-off. The forward pass evaluates the field exactly
    as often as ``backprop``'s; the backward pass re-evaluates every accepted
    step once (``stats.backward_nfe``). Runs the integrator's
    :class:`~flowkit.interfaces.SupportsCheckpointing` path.

    When not to use it: memory still grows with the number of steps (one
    state per step, two for FSAL methods), and each step's field evaluations
    run twice, so it is slower than ``backprop`` whenever ``backprop``'s
    memory fits; use ``adjoint`` or ``reversible`` when the number of steps is
    unbounded. Gradients reach only ``params`` (tensors the field closes over
    that are not among them get none), and they cannot be differentiated
    again (no higher-order gradients). Needs an integrator with
    ``checkpointable=True`` (the native Runge-Kutta ones).

    Arguments:
        params: the tensors to differentiate with respect to (default: the
            ``params`` given to the solve, else every parameter of ``func``
            when it is an ``nn.Module``, as for ``adjoint``).
    """

    requires = ("checkpointable",)
    exact_discrete_gradient: ClassVar[bool] = True

    protocol = SupportsCheckpointing
    alternative = "the 'backprop' or 'adjoint' gradient strategy"


class Reversible(_GradientPath):
    """The algebraically exact adjoint of a reversible integrator.

    The backward pass reconstructs the forward states exactly by running the
    reversible method backward, so gradients equal ``backprop``'s through the
    same solver to round-off, with memory that does not grow with the steps.
    Runs the integrator's :class:`~flowkit.interfaces.SupportsReversibleSolve` path.

    When not to use it: only integrators declaring ``reversible=True`` (such
    as ``torchsde.reversible_heun``) qualify, and those are low-order,
    fixed-step methods, so reaching a tight accuracy takes many steps.

    Arguments:
        params: the tensors to differentiate with respect to (default as for
            ``adjoint``).
    """

    requires = ("reversible",)
    constant_memory = True
    exact_discrete_gradient: ClassVar[bool] = True

    protocol = SupportsReversibleSolve
    alternative = "an integrator such as 'torchsde.reversible_heun', or another gradient strategy"


class TorchdiffeqAdjoint(_GradientPath):
    """torchdiffeq's own ``odeint_adjoint``, for comparison with flowkit's ``adjoint``.

    Runs the integrator's :class:`~flowkit.interfaces.SupportsNativeAdjoint` path.

    When not to use it: it works with torchdiffeq integrators only
    (``native_adjoint=True``), and like every continuous adjoint its gradient
    is approximate to the solver's tolerance. Prefer flowkit's ``adjoint``,
    which runs on any integrator; this one exists for comparisons.

    Arguments:
        params: the tensors to differentiate with respect to (default as for
            ``adjoint``).
    """

    requires = ("native_adjoint",)
    constant_memory = True

    protocol = SupportsNativeAdjoint
    alternative = "flowkit's solver-agnostic 'adjoint' strategy, which runs on any integrator"


@hookimpl
def flowkit_register_gradient_strategies(register: Register) -> None:
    """Register the built-in gradient strategies."""
    register("backprop", Backprop, aliases=("direct", "discretise_then_optimise"))
    register("adjoint", Adjoint, aliases=("continuous_adjoint", "optimise_then_discretise"))
    register("checkpoint", Checkpoint, aliases=("checkpointed",))
    register("reversible", Reversible, aliases=("reversible_adjoint",))
    register("torchdiffeq_adjoint", TorchdiffeqAdjoint)
