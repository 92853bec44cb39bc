"""Built-in plugin: native explicit Runge-Kutta integrators (pure torch).

Each method is a Butcher tableau (data, in :mod:`flowkit.rk.methods`) made into
a class by one call of :func:`~flowkit.rk.runge_kutta_class`; the single
stepper and the two loops of :mod:`flowkit.rk` run them all.

Fixed step (the options of :class:`~flowkit.interfaces.FixedStepIntegrator`:
``step_size`` or ``n_steps``, ``max_steps``, ``on_max_steps``): ``euler`` (1),
``midpoint`` (2), ``heun`` (2), ``ralston`` (2), ``rk4`` (4, classic),
``rk4_38`` (4, 3/8 rule).

Adaptive embedded pairs (the options of
:class:`~flowkit.interfaces.AdaptiveIntegrator`: ``rtol``, ``atol``,
``first_step``, ``min_step``, ``max_step``, ``max_steps``, ``on_max_steps``,
``norm``; and ``controller_beta``): ``adaptive_heun`` (2/1), ``bosh3`` (3/2),
``dopri5`` (5/4, with dense output), ``tsit5`` (5/4), ``dopri8`` (8/5/3,
Hairer's DOP853).
"""

from __future__ import annotations

from flowkit.hookspecs import Register, hookimpl
from flowkit.rk import runge_kutta_class
from flowkit.rk.methods import (
    BOSH3,
    DOPRI5,
    DOPRI8,
    EULER,
    HEUN,
    HEUN_EULER,
    MIDPOINT,
    RALSTON,
    RK4,
    RK4_38,
    TSIT5,
)

__all__ = [
    "AdaptiveHeun",
    "Bosh3",
    "Dopri5",
    "Dopri8",
    "Euler",
    "Heun",
    "Midpoint",
    "RK4Classic",
    "RK4ThreeEighths",
    "Ralston",
    "Tsit5",
    "flowkit_register_integrators",
]

# -- one class per method: name, tableau, docstring ---------------------------
Euler = runge_kutta_class("Euler", EULER, "Explicit Euler, order 1.")
Midpoint = runge_kutta_class("Midpoint", MIDPOINT, "Explicit midpoint rule, order 2.")
Heun = runge_kutta_class("Heun", HEUN, "Heun's method (explicit trapezoidal rule), order 2.")
Ralston = runge_kutta_class(
    "Ralston", RALSTON, "Ralston's second-order method (minimum error bound)."
)
RK4Classic = runge_kutta_class("RK4Classic", RK4, "The classic fourth-order Runge-Kutta method.")
RK4ThreeEighths = runge_kutta_class("RK4ThreeEighths", RK4_38, "Kutta's fourth-order 3/8 rule.")
AdaptiveHeun = runge_kutta_class(
    "AdaptiveHeun",
    HEUN_EULER,
    "Heun-Euler embedded pair, order 2 with a first-order error estimate.",
)
Bosh3 = runge_kutta_class("Bosh3", BOSH3, "Bogacki-Shampine 3(2) pair, FSAL.")
Dopri5 = runge_kutta_class(
    "Dopri5",
    DOPRI5,
    "Dormand-Prince 5(4) pair, FSAL, with Hairer's fourth-order dense output.",
)
Tsit5 = runge_kutta_class(
    "Tsit5", TSIT5, "Tsitouras 5(4) pair, FSAL (output times are stepped to)."
)
Dopri8 = runge_kutta_class(
    "Dopri8",
    DOPRI8,
    "Dormand-Prince 8(5,3) (DOP853), FSAL (output times are stepped to).",
)


@hookimpl
def flowkit_register_integrators(register: Register) -> None:
    """Register the native Runge-Kutta integrators."""
    register("euler", Euler)
    register("midpoint", Midpoint)
    register("heun", Heun, aliases=("heun2",))
    register("ralston", Ralston)
    register("rk4", RK4Classic, aliases=("classic_rk4",))
    register("rk4_38", RK4ThreeEighths, aliases=("rk38",))
    register("adaptive_heun", AdaptiveHeun, aliases=("heun_euler",))
    register("bosh3", Bosh3, aliases=("bogacki_shampine",))
    register("dopri5", Dopri5, aliases=("dormand_prince",))
    register("tsit5", Tsit5)
    register("dopri8", Dopri8, aliases=("dop853",))
