"""An example third-party flowkit plugin: Shu and Osher's SSP-RK3 integrator.

The short path: a new explicit Runge-Kutta method is its Butcher tableau and
one call of :func:`flowkit.rk.runge_kutta_class`. flowkit's stepper runs it,
its fixed-step options (``step_size`` or ``n_steps``, equal steps across the
whole span; ``max_steps``, ``on_max_steps``) come from
:class:`flowkit.interfaces.FixedStepIntegrator`, and it offers step
checkpointing (the ``checkpoint`` gradient strategy) with no code of its own.

Installed with ``pip install``, it is found through the ``flowkit`` entry-point
group declared in its ``pyproject.toml``, with no change to flowkit:
``flowkit list`` shows ``ssprk3`` and ``flowkit.odeint(..., method="ssprk3")``
uses it, with every gradient strategy that needs nothing more of it.

References:
    Shu, C.-W. and Osher, S. (1988). Efficient implementation of essentially
    non-oscillatory shock-capturing schemes. J. Comput. Phys. 77(2).
"""

from __future__ import annotations

import flowkit
from flowkit.rk import ButcherTableau, runge_kutta_class

__all__ = ["SSPRK3", "SSPRK3_TABLEAU", "flowkit_register_integrators"]

SSPRK3_TABLEAU = ButcherTableau(
    "ssprk3",
    c=(0.0, 1.0, 0.5),
    a=((), (1.0,), (0.25, 0.25)),
    b=(1 / 6, 1 / 6, 2 / 3),
    order=3,
)
SSPRK3 = runge_kutta_class(
    "SSPRK3", SSPRK3_TABLEAU, "Third-order strong-stability-preserving Runge-Kutta, fixed step."
)


@flowkit.hookimpl
def flowkit_register_integrators(register: flowkit.hookspecs.Register) -> None:
    """Register ``ssprk3`` with flowkit."""
    register("ssprk3", SSPRK3, aliases=("shu_osher",))
