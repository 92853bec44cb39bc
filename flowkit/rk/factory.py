"""One call from a :class:`~flowkit.rk.tableau.ButcherTableau` to an integrator class."""

from __future__ import annotations

import sys

from flowkit.rk.adaptive import AdaptiveRungeKutta
from flowkit.rk.fixed_step import FixedStepRungeKutta
from flowkit.rk.solver import RungeKuttaIntegrator
from flowkit.rk.tableau import ButcherTableau

__all__ = ["runge_kutta_class"]


def runge_kutta_class(
    class_name: str, tableau: ButcherTableau, doc: str, *, module: str | None = None
) -> type[RungeKuttaIntegrator]:
    """The integrator class running ``tableau``.

    An embedded pair (a tableau with ``b_error``) gives an
    :class:`~flowkit.rk.adaptive.AdaptiveRungeKutta`, any other tableau a
    :class:`~flowkit.rk.fixed_step.FixedStepRungeKutta`; ``order`` is the
    tableau's. The class is the same as one written out with ``tableau`` and
    ``order`` class attributes.

    Arguments:
        class_name: the class's ``__name__`` (shown in error messages).
        tableau: the method.
        doc: the class docstring (``flowkit list`` shows its first line).
        module: the ``__module__`` to report (default: the caller's module,
            as :func:`collections.namedtuple` does).

    Example:
        >>> from flowkit.rk import ButcherTableau
        >>> EULER = ButcherTableau("euler", c=(0.0,), a=((),), b=(1.0,), order=1)
        >>> Euler = runge_kutta_class("Euler", EULER, "Explicit Euler, order 1.")
        >>> Euler.order, Euler.adaptive, Euler.checkpointable
        (1, False, True)
    """
    base = AdaptiveRungeKutta if tableau.b_error is not None else FixedStepRungeKutta
    namespace = {
        "__doc__": doc,
        "__module__": module or sys._getframe(1).f_globals.get("__name__", __name__),
        "__qualname__": class_name,
        "tableau": tableau,
        "order": tableau.order,
    }
    return type(class_name, (base,), namespace)
