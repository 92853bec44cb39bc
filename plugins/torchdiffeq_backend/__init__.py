"""Built-in plugin: every ODE method of the installed torchdiffeq, as ``torchdiffeq.<method>``.

The method list, the orders and whether a method is adaptive are read from
torchdiffeq itself when the registry is built (``SOLVERS`` in
``torchdiffeq._impl.odeint`` and the solver classes' ``order`` attributes and
base classes), never typed here. Names that map to the same solver class
become aliases (``torchdiffeq.fixed_adams`` of ``torchdiffeq.implicit_adams``).

Skipped (see :data:`SKIPPED`): ``scipy_solver``, because it integrates through
NumPy and returns detached tensors, breaking the integrator contract (gradients
must flow); ``explicit_adams``, because it converges to wrong solutions in the
installed torchdiffeq (its error grows as the step shrinks); ``implicit_adams``
(alias ``fixed_adams``), because it has no convergence order to declare: it is
a variable-order (4 to 12) Adams-Bashforth-Moulton method whose order falls
back whenever its fixed number of corrector iterations misses the corrector
tolerance, so the measured order changes with the step size (slopes from 3.9
to 10.8 on ``linear_skew``, see :data:`SKIPPED`), and any declared order fails
flowkit's convergence-order conformance check in some range of steps.

Options are torchdiffeq's own (``rtol``, ``atol`` and the keyword arguments of
the solver class, e.g. ``first_step``, ``max_num_steps``, ``step_size``),
read from its solver signatures at registration and validated at
construction: an unknown one is a ``TypeError`` naming the valid ones.
``rtol``/``atol`` default to torchdiffeq's 1e-7/1e-9. Adaptive methods
declare :class:`~flowkit.interfaces.AdaptiveIntegrator` (tolerances, norm,
step bounds; :class:`TorchdiffeqAdaptive`), fixed-grid ones
:class:`~flowkit.interfaces.FixedStepIntegrator` (``step_size`` or
``n_steps`` with flowkit's meaning; :class:`TorchdiffeqFixedStep`).

Statistics: ``nfe`` counts calls of the field; accepted and rejected steps come
from torchdiffeq's step callbacks (fixed-grid methods report every step as
accepted); ``final_step_size`` is the last accepted step. With the native
adjoint, the backward solve's evaluations and steps fill ``stats.backward_*``
as the backward pass runs.

Failures map onto flowkit's errors: torchdiffeq's "underflow in dt" becomes
:class:`~flowkit.errors.StepSizeUnderflowError`, "max_num_steps exceeded"
:class:`~flowkit.errors.MaxStepsExceededError` (named with the last time the
field was evaluated at), NaN/Inf in the result
:class:`~flowkit.errors.NonFiniteStateError`.
"""

from __future__ import annotations

import importlib
import inspect
import sys

from flowkit.plugins.torchdiffeq_backend.integrators import (
    TorchdiffeqAdaptive,
    TorchdiffeqFixedStep,
    TorchdiffeqIntegrator,
)

from flowkit.hookspecs import Register, hookimpl

__all__ = [
    "SKIPPED",
    "TorchdiffeqAdaptive",
    "TorchdiffeqFixedStep",
    "TorchdiffeqIntegrator",
    "flowkit_register_integrators",
    "solver_table",
]

_ADAMS_REASON = (
    "has no order to declare: torchdiffeq 0.2.5's AdamsBashforthMoulton starts with RK4, "
    "raises its Adams order up to 12 as its history grows, and drops history whenever its "
    "4 corrector iterations miss rtol (default 1e-3), so its order depends on the step: on "
    "linear_skew its error falls 5.8e-2, 3.9e-3, 2.5e-4, 1.4e-7, 2.7e-9, 9.6e-11 at "
    "8..256 steps (slopes 3.9, 3.9, 10.8, 5.7, 4.8; non-converged corrector in every "
    "step up to 32 steps, none from 64); it declares 4"
)

SKIPPED: dict[str, str] = {
    "scipy_solver": "integrates through NumPy and returns detached tensors (no gradients)",
    "explicit_adams": (
        "returns wrong solutions in torchdiffeq 0.2.5: on y' = -y over [0, 1] its error grows "
        "from 2.4e-4 at step 0.1 to 0.37 at step 0.01"
    ),
    "implicit_adams": _ADAMS_REASON,
    "fixed_adams": _ADAMS_REASON,
}
"""torchdiffeq methods not registered, with the reason."""

_NOT_OPTIONS = {"self", "func", "y0"}


def solver_table() -> dict[str, type]:
    """torchdiffeq's own table of method name -> solver class.

    Raises:
        ImportError: if torchdiffeq (or its method table) is unavailable.
    """
    importlib.import_module("torchdiffeq")
    module = sys.modules.get("torchdiffeq._impl.odeint")
    table = getattr(module, "SOLVERS", None)
    if not isinstance(table, dict):
        raise ImportError("torchdiffeq._impl.odeint.SOLVERS not found; unsupported torchdiffeq")
    return dict(table)


def _solver_options(solver: type) -> set[str]:
    """Keyword options of a torchdiffeq solver class, following ``**kwargs`` up the MRO."""
    names: set[str] = set()
    for klass in solver.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        params = inspect.signature(init).parameters.values()
        names.update(
            p.name
            for p in params
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name not in _NOT_OPTIONS
        )
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            break
    return names


def _is_adaptive(solver: type) -> bool:
    from torchdiffeq._impl.solvers import AdaptiveStepsizeODESolver

    return issubclass(solver, AdaptiveStepsizeODESolver)


def _make_class(method: str, solver: type) -> type[TorchdiffeqIntegrator]:
    adaptive = _is_adaptive(solver)
    valid = _solver_options(solver)
    if adaptive:
        valid |= {"rtol", "atol", "norm"}
    else:
        valid |= {"n_steps"}
    cls = type(
        f"Torchdiffeq_{method}",
        (TorchdiffeqAdaptive if adaptive else TorchdiffeqFixedStep,),
        {
            "__doc__": (
                f"torchdiffeq's ``{method}`` ({solver.__name__}), order {solver.order}, "
                f"{'adaptive' if adaptive else 'fixed grid'}."
            ),
            "__module__": __name__,
            "method": method,
            "order": int(solver.order),
            "adaptive": adaptive,
            "valid_options": frozenset(valid),
            "step_callbacks": "callback_step" in solver.valid_callbacks(),
        },
    )
    params = [
        inspect.Parameter(
            name,
            inspect.Parameter.KEYWORD_ONLY,
            default={"rtol": 1e-7, "atol": 1e-9}.get(name),
        )
        for name in sorted(valid)
    ]
    cls.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    return cls


@hookimpl
def flowkit_register_integrators(register: Register) -> None:
    """Register every torchdiffeq method (except :data:`SKIPPED`) as ``torchdiffeq.<name>``."""
    table = solver_table()
    canonical: dict[type, str] = {}
    aliases: dict[str, list[str]] = {}
    for name, solver in table.items():
        if name in SKIPPED:
            continue
        if solver in canonical:
            aliases[canonical[solver]].append(f"torchdiffeq.{name}")
            continue
        canonical[solver] = name
        aliases[name] = []
    for solver, name in canonical.items():
        register(f"torchdiffeq.{name}", _make_class(name, solver), aliases=tuple(aliases[name]))
