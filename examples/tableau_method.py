"""The short path to a new integrator: a Butcher tableau and one line of registration.

Kutta's third-order method, registered as ``kutta3``. flowkit's stepper runs
the tableau; the fixed-step options (``step_size`` or ``n_steps``: equal steps
across the whole span) and step checkpointing (the ``checkpoint`` gradient
strategy) come with :func:`flowkit.rk.runge_kutta_class`. Load it with
``flowkit.build_registry(plugins=[("kutta3", module)])``, or declare the
module in your package's ``flowkit`` entry-point group (see
``plugins/example_plugin``).
"""

from __future__ import annotations

import flowkit
from flowkit.rk import ButcherTableau, runge_kutta_class

__all__ = ["KUTTA3", "Kutta3", "flowkit_register_integrators"]

KUTTA3 = ButcherTableau(
    "kutta3",
    c=(0.0, 0.5, 1.0),
    a=((), (0.5,), (-1.0, 2.0)),
    b=(1 / 6, 2 / 3, 1 / 6),
    order=3,
)
Kutta3 = runge_kutta_class("Kutta3", KUTTA3, "Kutta's third-order method, fixed step.")


@flowkit.hookimpl
def flowkit_register_integrators(register: flowkit.hookspecs.Register) -> None:
    """Register ``kutta3``."""
    register("kutta3", Kutta3)
