"""Method names in ``flowkit.odeint``: torchdiffeq's names mean what torchdiffeq means.

flowkit has two name sets, and this module is the one table between them.

* **The registry names** (``flowkit list integrators``), used by
  :class:`flowkit.CNF`, :func:`flowkit.solve`, the CLI and the benchmarks:
  flowkit's own methods, e.g. ``rk4`` is the *classic* fourth-order method and
  ``dopri8`` is Hairer's DOP853; the torchdiffeq backend's methods are
  ``torchdiffeq.<name>``. These never change meaning.
* **The torchdiffeq names** in :func:`flowkit.odeint` and
  :func:`flowkit.odeint_adjoint` (the drop-in for ``torchdiffeq.odeint``):
  the 14 keys of torchdiffeq's own ``SOLVERS`` table mean torchdiffeq's method,
  with torchdiffeq's options. :data:`TORCHDIFFEQ_NAMES` resolves each one to
  the native method with the same tableau, run natively, or else to the
  registered ``torchdiffeq.<name>`` backend:

  =================  ==========================  =================================
  torchdiffeq name   native twin (same tableau)  otherwise (and for their options)
  =================  ==========================  =================================
  ``dopri5``         ``dopri5``                  ``torchdiffeq.dopri5``
  ``bosh3``          ``bosh3``                   ``torchdiffeq.bosh3``
  ``adaptive_heun``  ``adaptive_heun``           ``torchdiffeq.adaptive_heun``
  ``euler``          ``euler``                   ``torchdiffeq.euler``
  ``midpoint``       ``midpoint``                ``torchdiffeq.midpoint``
  ``heun2``          ``heun``                    ``torchdiffeq.heun2``
  ``rk4``            ``rk4_38`` (the 3/8 rule)   ``torchdiffeq.rk4``
  ``dopri8``         none (another 8(7) pair)    ``torchdiffeq.dopri8``
  ``fehlberg2``      none                        ``torchdiffeq.fehlberg2``
  ``heun3``          none                        ``torchdiffeq.heun3``
  =================  ==========================  =================================

  A fixed-step twin gives torchdiffeq's values to round-off. An adaptive twin
  takes its own steps (flowkit's step control) and agrees to the tolerance:
  native ``bosh3`` and ``adaptive_heun`` step to the output times where
  torchdiffeq interpolates, which is why they can be more accurate there.

  The native method runs when every option given has the same meaning there
  (:data:`NATIVE_ADAPTIVE_OPTIONS`, :data:`NATIVE_FIXED_OPTIONS`, and a fixed
  method's ``step_size`` when every output interval is a whole number of
  steps, where torchdiffeq's grid and flowkit's coincide) and the
  function has no torchdiffeq step callbacks; any other torchdiffeq option
  (``grid_constructor``, ``perturb``, ``interp``, ``step_size`` of a fixed
  method, ``jump_t``, ``step_t``, ``safety``, ``ifactor``, ``dfactor``,
  ``dtype``, ``min_step``, ``max_num_steps``) or a callback sends the call to
  the backend, which hands it to torchdiffeq itself, so it means exactly what
  torchdiffeq means. An option neither takes is a ``TypeError`` naming the
  valid ones (torchdiffeq only warns).
  ``explicit_adams``, ``implicit_adams``/``fixed_adams`` and ``scipy_solver``
  (:data:`UNREGISTERED`) are not registered by the backend (see
  ``flowkit.plugins.torchdiffeq_backend.SKIPPED``); ``flowkit.odeint`` runs
  them through ``torchdiffeq.odeint`` itself
  (:class:`~flowkit.odeint_torchdiffeq.TorchdiffeqMethod`), ``scipy_solver``
  with gradients from flowkit's adjoint.
* **Every other name** (``tsit5``, ``rk4_38``, ``torchdiffeq.dopri8``,
  ``torchsde.heun``, a third-party plugin's) passes through to the registry
  unchanged, with flowkit's options.

Fixed-step torchdiffeq methods step the way torchdiffeq steps: without
``step_size`` on the grid ``t`` itself (one step per output interval; the
native method runs with a largest step of the longest interval), with
``step_size`` on torchdiffeq's grid ``t[0] + k * step_size`` (last point moved
to ``t[-1]``), output times interpolated (``interp``, default linear), through
the backend. flowkit's ``n_steps`` is accepted too, with flowkit's meaning
(equal steps across the span; torchdiffeq has no option of that name).

``min_step`` differs: torchdiffeq clamps every step to at least ``min_step``
(a step that fails its error test at ``min_step`` is retried at ``min_step``
until ``max_num_steps`` runs out), while flowkit's native methods raise
:class:`~flowkit.errors.StepSizeUnderflowError` below it; so in this namespace
``min_step`` goes to the backend, with torchdiffeq's meaning.
``max_num_steps`` too: torchdiffeq counts attempted steps per output
interval, flowkit's ``max_steps`` across the solve.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from flowkit.state import State

__all__ = [
    "CALLBACK_NAMES",
    "NATIVE_ADAPTIVE_OPTIONS",
    "NATIVE_FIXED_OPTIONS",
    "TORCHDIFFEQ_NAMES",
    "UNREGISTERED",
    "MethodChoice",
    "resolve_method",
    "supported_callbacks",
    "user_callbacks",
]

TORCHDIFFEQ_NAMES: dict[str, str | None] = {
    "dopri5": "dopri5",
    "bosh3": "bosh3",
    "adaptive_heun": "adaptive_heun",
    "euler": "euler",
    "midpoint": "midpoint",
    "heun2": "heun",
    "rk4": "rk4_38",
    "dopri8": None,
    "fehlberg2": None,
    "heun3": None,
    "explicit_adams": None,
    "implicit_adams": None,
    "fixed_adams": None,
    "scipy_solver": None,
}
"""torchdiffeq's method name -> flowkit's native method with the same tableau (or None)."""

_FIXED = frozenset(
    {
        "euler",
        "midpoint",
        "heun2",
        "heun3",
        "rk4",
        "explicit_adams",
        "implicit_adams",
        "fixed_adams",
    }
)

NATIVE_ADAPTIVE_OPTIONS = frozenset({"rtol", "atol", "first_step", "max_step", "norm"})
"""Options an adaptive torchdiffeq name may carry and still run natively (same meaning)."""

NATIVE_FIXED_OPTIONS = frozenset({"n_steps"})
"""Options a fixed-step torchdiffeq name may carry and still run natively."""

CALLBACK_NAMES = ("callback_step", "callback_accept_step", "callback_reject_step")
"""torchdiffeq's step callbacks, looked up on the function as attributes."""

UNREGISTERED = frozenset({"explicit_adams", "implicit_adams", "fixed_adams", "scipy_solver"})
"""torchdiffeq names that no plugin registers (run by torchdiffeq itself)."""

MethodChoice = tuple[str, dict[str, Any]]
"""A registry name and the integrator options to build it with."""


def user_callbacks(func: object) -> set[str]:
    """The torchdiffeq step callbacks ``func`` defines (callable attributes)."""
    return {name for name in CALLBACK_NAMES if callable(getattr(func, name, None))}


def supported_callbacks(method: str) -> set[str]:
    """The callbacks torchdiffeq's ``method`` calls (its solver's ``valid_callbacks()``)."""
    import torchdiffeq  # noqa: F401  (loads torchdiffeq._impl.odeint)
    from torchdiffeq._impl.odeint import SOLVERS

    return set(SOLVERS[method].valid_callbacks())


def _grid_from_step_size(step_size: float) -> Callable[[Any, Tensor, Tensor], Tensor]:
    """torchdiffeq's grid for ``step_size``: ``t[0] + k * step_size``, the last point at ``t[-1]``.

    torchdiffeq builds it on increasing times (a decreasing ``t`` is negated
    first), so for a decreasing ``t`` the grid is built on ``-t`` and negated.
    """

    def increasing(t: Tensor) -> Tensor:
        start, end = t[0], t[-1]
        niters = torch.ceil((end - start) / step_size + 1).item()
        grid = torch.arange(0, niters, dtype=t.dtype, device=t.device) * step_size + start
        grid[-1] = t[-1]
        return grid

    def grid_constructor(func: Any, y0: Tensor, t: Tensor) -> Tensor:
        if len(t) > 1 and bool(t[0] > t[1]):
            return -increasing(-t)
        return increasing(t)

    return grid_constructor


def _tensor_norm(norm: Callable[[Tensor], Tensor]) -> Callable[[tuple[Tensor, ...]], Tensor]:
    """A norm written for a tensor state, called by native methods with a one-tuple."""

    def native(leaves: tuple[Tensor, ...]) -> Tensor:
        return norm(leaves[0])

    return native


def resolve_method(
    method: str | None,
    options: dict[str, Any],
    *,
    func: object,
    y0: State,
    t: Tensor,
) -> MethodChoice:
    """The registry name and integrator options for ``method`` in the torchdiffeq namespace.

    Arguments:
        method: a torchdiffeq name (see :data:`TORCHDIFFEQ_NAMES`), any other
            registry name (passed through), or None for ``"dopri5"``.
        options: the integrator options, ``rtol``/``atol`` included, as given.
        func: the right-hand side (its step callbacks choose the backend).
        y0: the initial state (a tensor state's ``norm`` is called with a tensor).
        t: the output times (a fixed-step method without ``step_size`` steps on them).

    Returns:
        ``(registry name, options)``.

    An :data:`UNREGISTERED` name comes back as ``torchdiffeq.<name>`` with
    the options as given; :func:`flowkit.odeint` runs it with
    :class:`~flowkit.odeint_torchdiffeq.TorchdiffeqMethod`.
    """
    name = "dopri5" if method is None else method
    if name not in TORCHDIFFEQ_NAMES:
        return name, dict(options)
    if name in UNREGISTERED:
        return f"torchdiffeq.{name}", dict(options)  # torchdiffeq's own options, verbatim
    native = TORCHDIFFEQ_NAMES[name]
    fixed = name in _FIXED
    allowed = NATIVE_FIXED_OPTIONS if fixed else NATIVE_ADAPTIVE_OPTIONS
    if fixed and _steps_hit_the_times(options.get("step_size"), t):
        allowed = allowed | {"step_size"}
    if native is not None and set(options) <= allowed and not user_callbacks(func):
        return native, _native_options(options, fixed=fixed, y0=y0, t=t)
    return f"torchdiffeq.{name}", _backend_options(options, fixed=fixed)


def _steps_hit_the_times(step_size: object, t: Tensor) -> bool:
    """Whether torchdiffeq's grid for ``step_size`` is the native one: every output
    interval a whole number of steps (to 1e-9), so both take the same steps."""
    if isinstance(step_size, bool) or not isinstance(step_size, (int, float)) or step_size <= 0:
        return False
    gaps = (t[1:] - t[:-1]).detach().abs().tolist()
    return all(
        abs(g / step_size - round(g / step_size)) <= 1e-9 * max(1.0, g / step_size)
        and round(g / step_size) >= 1
        for g in gaps
    )


def _native_options(
    options: dict[str, Any], *, fixed: bool, y0: State, t: Tensor
) -> dict[str, Any]:
    out = dict(options)
    if fixed:
        if "n_steps" not in out and "step_size" not in out:
            out["step_size"] = float((t[1:] - t[:-1]).detach().abs().max())  # one step per interval
        return out
    norm = out.get("norm")
    if norm is not None and isinstance(y0, Tensor):
        out["norm"] = _tensor_norm(norm)
    return out


def _backend_options(options: dict[str, Any], *, fixed: bool) -> dict[str, Any]:
    out = dict(options)
    if not fixed:
        return out
    step_size = out.pop("step_size", None)
    if step_size is not None:
        if "grid_constructor" in out:
            raise ValueError(
                "step_size and grid_constructor were both given; torchdiffeq takes one of them. "
                "Remove one."
            )
        out["grid_constructor"] = _grid_from_step_size(step_size)
    elif "grid_constructor" not in out and "n_steps" not in out:
        out["grid_constructor"] = lambda func, y0, t: t  # torchdiffeq's default: t itself
    return out
