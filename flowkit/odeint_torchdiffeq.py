"""torchdiffeq's methods that no plugin registers, run by torchdiffeq for ``flowkit.odeint``.

The torchdiffeq backend plugin leaves ``explicit_adams``, ``implicit_adams``
(alias ``fixed_adams``) and ``scipy_solver`` out of the registry, because they
cannot meet flowkit's integrator contract as registered components (the Adams
methods have no fixed convergence order to declare; ``scipy_solver`` returns
tensors without gradients; see ``flowkit.plugins.torchdiffeq_backend.SKIPPED``).
A torchdiffeq user still calls them by name, so :func:`flowkit.odeint`
resolves them (:data:`~flowkit.odeint_methods.UNREGISTERED`) to
:class:`TorchdiffeqMethod`, which hands the call to ``torchdiffeq.odeint``
unchanged, with torchdiffeq's options (an option the method does not take is
a ``TypeError``). ``scipy_solver`` gets its gradients through flowkit's
adjoint (see :func:`flowkit.odeint`).
"""

from __future__ import annotations

import inspect
from typing import Any, ClassVar

from torch import Tensor

from flowkit.interfaces import Integrator
from flowkit.solution import Solution, SolverStats
from flowkit.state import Dynamics, State

__all__ = ["TorchdiffeqMethod", "method_options"]

_NOT_OPTIONS = frozenset({"self", "func", "y0", "rtol", "atol", "norm"})


def method_options(method: str) -> frozenset[str]:
    """The keyword options of torchdiffeq's solver for ``method``, up its ``**kwargs`` chain."""
    import torchdiffeq  # noqa: F401
    from torchdiffeq._impl.odeint import SOLVERS

    names: set[str] = set()
    for klass in SOLVERS[method].__mro__:
        if "__init__" not in klass.__dict__:
            continue
        params = inspect.signature(klass.__dict__["__init__"]).parameters.values()
        names |= {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            break
    return frozenset(names - _NOT_OPTIONS)


class TorchdiffeqMethod(Integrator):
    """One unregistered torchdiffeq method, run by ``torchdiffeq.odeint`` itself.

    Arguments:
        method: ``"explicit_adams"``, ``"implicit_adams"``, ``"fixed_adams"``
            or ``"scipy_solver"``.
        rtol, atol: torchdiffeq's tolerances (default 1e-7, 1e-9).
        **options: the method's torchdiffeq options (e.g. ``step_size``,
            ``max_order`` for the Adams methods, ``solver`` for scipy).

    Raises:
        TypeError: for an option the method does not take, naming the valid ones.

    Example:
        >>> import torch
        >>> m = TorchdiffeqMethod("implicit_adams", step_size=0.1)
        >>> sol = m.integrate(lambda t, y: -y, torch.ones(1), torch.tensor([0.0, 1.0]))
        >>> round(float(sol.ys[-1]), 4)
        0.3679
    """

    adaptive: ClassVar[bool] = False

    def __init__(
        self,
        method: str,
        *,
        rtol: float | Tensor = 1e-7,
        atol: float | Tensor = 1e-9,
        **options: Any,
    ) -> None:
        valid = method_options(method)
        unknown = sorted(set(options) - valid)
        if unknown:
            raise TypeError(
                f"Unknown option(s) {', '.join(map(repr, unknown))} for torchdiffeq's method "
                f"{method!r}. Valid options: {', '.join(sorted(valid)) or 'none'}."
            )
        self.method = method
        self.rtol, self.atol = rtol, atol
        self.options = options

    def integrate(self, func: Dynamics, y0: State, t: Tensor) -> Solution:
        """Solve with ``torchdiffeq.odeint``; ``stats.nfe`` counts the field's evaluations."""
        import torchdiffeq

        stats = SolverStats()

        def counted(tt: Tensor, y: State) -> State:
            stats.nfe += 1
            return func(tt, y)

        for name in ("callback_step", "callback_accept_step", "callback_reject_step"):
            if callable(getattr(func, name, None)):
                setattr(counted, name, getattr(func, name))
        ys = torchdiffeq.odeint(
            counted,
            y0,
            t,
            rtol=self.rtol,
            atol=self.atol,
            method=self.method,
            options=dict(self.options),
        )
        stats.t_reached = float(t[-1])
        return Solution(ts=t, ys=ys, stats=stats)
