"""torchsde's SDE solvers with real noise, as ``sde_integrator`` plugins.

``torchsde.euler`` (Euler-Maruyama), ``torchsde.milstein``, ``torchsde.srk``
(Rößler's stochastic Runge-Kutta) and ``torchsde.reversible_heun`` solve
``dy = mu(t, y) dt + sigma(t, y) dW`` with diagonal noise on flowkit's fixed
grid (:meth:`~flowkit.interfaces.SDEIntegrator.step_counts`), one torchsde
solver step per grid step, so the steps and the Brownian queries are exactly
those of the native ``euler_maruyama``. They are registered by the
``torchsde`` plugin (:mod:`flowkit.plugins.torchsde_backend`), beside the
zero-noise ODE solvers of the same names in the ``integrator`` kind.

* ``torchsde.euler``: Euler-Maruyama, Itô; strong order 0.5 (1.0 for
  additive noise), weak order 1.
* ``torchsde.milstein``: Milstein, Itô (``sigma dsigma/dy`` by autograd);
  strong order 1, weak order 1.
* ``torchsde.srk``: Rößler's stochastic Runge-Kutta (SRI for diagonal noise),
  Itô; strong order 1.5, weak order 1.5.
* ``torchsde.reversible_heun``: reversible Heun, Stratonovich; strong order
  0.5 (1.0 for additive noise), weak order 1.

Orders are those torchsde declares; "additive" noise is a diffusion
independent of the state, as in every built-in noising SDE.

Noise: a torchsde Brownian motion seeded by one draw from ``generator``
(kind chosen by the option ``brownian``: ``"interval"``, ``"tree"``,
``"path"``), or the given ``brownian`` path. Decreasing times are solved
in ``u = -t`` with the Brownian motion ``B(u) = -W(-u)``, whose increments
are those the native ``euler_maruyama`` takes for ``dt < 0``. See
:mod:`flowkit.plugins.torchsde_noise`.

Stratonovich: ``reversible_heun`` reads the SDE as Stratonovich. For a
diffusion independent of the state (every built-in SDE) the two readings
coincide; when the diffusion depends on the state it warns, since the
Itô solution then differs (pass the drift ``mu - sigma dsigma/dy / 2`` for
an Itô SDE, or pick an Itô method).

torchsde's solvers are driven step by step through ``torchsde._core`` (as
``torchsde.sdeint`` does internally), which keeps flowkit's grid exactly,
keeps ``reversible_heun``'s auxiliary state across output times and counts
every drift evaluation (``stats.nfe``).

References:
    Kloeden and Platen, "Numerical Solution of Stochastic Differential
    Equations", Springer 1992. A. Rößler, "Runge-Kutta methods for the strong
    approximation of solutions of stochastic differential equations", SIAM
    J. Numer. Anal. 48 (2010). P. Kidger, J. Foster, X. Li, T. Lyons,
    "Efficient and accurate gradients for neural SDEs", NeurIPS 2021.
"""

from __future__ import annotations

import itertools
import warnings
from typing import Any, ClassVar

import torch
from flowkit.plugins.sde_integrators import equal_steps
from flowkit.plugins.torchsde_noise import (
    BROWNIAN_KINDS,
    LEVY_AREA_KINDS,
    SolverTimeBrownian,
    seeded_brownian,
)
from torch import Tensor, nn

from flowkit.errors import NonFiniteStateError
from flowkit.hookspecs import Register, hookimpl
from flowkit.interfaces import BrownianMotion, SDEIntegrator
from flowkit.interfaces.sde_integrator import SDEFunction, SDEType
from flowkit.solution import Solution, SolverStats

__all__ = [
    "TorchsdeEuler",
    "TorchsdeMilstein",
    "TorchsdeReversibleHeun",
    "TorchsdeSDEIntegrator",
    "TorchsdeSRK",
    "SDE_INTEGRATORS",
    "diffusion_depends_on_state",
    "flowkit_register_sde_integrators",
]


def diffusion_depends_on_state(diffusion: SDEFunction, t: Tensor, y: Tensor) -> bool:
    """Whether ``diffusion(t, y)`` depends on ``y`` (one evaluation and one gradient).

    Arguments:
        diffusion: ``sigma(t, y)``.
        t: a time (0-d).
        y: a state of shape ``(batch, d)``.

    Returns:
        True when the derivative of ``sigma`` with respect to ``y`` is nonzero
        somewhere at ``(t, y)``.
    """
    with torch.enable_grad():
        probe = y.detach().requires_grad_(True)
        out = diffusion(t, probe)
        if not out.requires_grad:
            return False
        (grad,) = torch.autograd.grad(out.sum(), probe, allow_unused=True)
    return grad is not None and bool((grad != 0).any())


class _SolverTimeSDE(nn.Module):
    """The SDE as torchsde sees it, in solver time ``u = sign * t`` (diagonal noise)."""

    noise_type = "diagonal"

    def __init__(
        self, drift: SDEFunction, diffusion: SDEFunction, sign: float, sde_type: SDEType
    ) -> None:
        super().__init__()
        self.drift = drift
        self.diffusion = diffusion
        self.sign = sign
        self.sde_type = sde_type
        self.nfe = 0

    def f(self, u: Tensor, y: Tensor) -> Tensor:
        self.nfe += 1
        out = self.drift(self.sign * u, y)
        return out if self.sign > 0 else -out

    def g(self, u: Tensor, y: Tensor) -> Tensor:
        return self.diffusion(self.sign * u, y).expand_as(y)


class TorchsdeSDEIntegrator(SDEIntegrator):
    """A torchsde solver of an SDE with diagonal noise on flowkit's fixed grid.

    See the module docs for the noise, the seed, reverse time and the
    Stratonovich reading.

    Arguments:
        step_size, n_steps: see :class:`~flowkit.interfaces.SDEIntegrator`.
        brownian: the kind of Brownian motion drawn when none is given to
            :meth:`integrate`: ``"interval"`` (default), ``"tree"`` or ``"path"``.

    Raises:
        TypeError: for an unknown option.
        ValueError: for both ``step_size`` and ``n_steps``, non-positive values,
            or an unknown ``brownian`` kind.

    Example:
        >>> import torch
        >>> em = TorchsdeEuler(n_steps=10)
        >>> g = torch.Generator().manual_seed(0)
        >>> sol = em.integrate(lambda t, y: -y, lambda t, y: torch.zeros_like(y),
        ...                    torch.ones(1, 1), torch.tensor([0.0, 1.0]), generator=g)
        >>> round(float(sol.ys[-1]), 6)  # zero noise: explicit Euler, 0.9 ** 10
        0.348678
    """

    method: ClassVar[str] = ""
    levy_area: ClassVar[str] = "none"
    """The Lévy-area approximation the method needs (``"none"``: increments only)."""

    def __init__(
        self,
        *,
        step_size: float | None = None,
        n_steps: int | None = None,
        brownian: str = "interval",
    ) -> None:
        super().__init__(step_size=step_size, n_steps=n_steps)
        if brownian not in BROWNIAN_KINDS:
            raise ValueError(
                f"Unknown brownian {brownian!r} for torchsde.{self.method}; choose one of "
                f"{', '.join(BROWNIAN_KINDS)}."
            )
        self.brownian = brownian

    def _solver_brownian(
        self,
        brownian: BrownianMotion | None,
        generator: torch.Generator | None,
        times: list[float],
        sign: float,
        y0: Tensor,
    ) -> Any:
        if brownian is None:
            step = abs(times[-1] - times[0]) / max(sum(self.step_counts(times)), 1)
            u0, u1 = sign * times[0], sign * times[-1]
            return seeded_brownian(self.brownian, u0, u1, y0, step, self.levy_area, generator)
        wrapped = SolverTimeBrownian(brownian, sign, y0)
        if self.levy_area != "none" and wrapped.levy_area_approximation not in LEVY_AREA_KINDS:
            raise ValueError(
                f"torchsde.{self.method} needs the space-time Lévy area of the Brownian motion, "
                f"and the given brownian provides "
                f"levy_area_approximation={wrapped.levy_area_approximation!r}; pass a "
                "torchsde.BrownianInterval(..., levy_area_approximation='space-time'), or leave "
                "brownian out to let the integrator draw its own."
            )
        return wrapped

    def _check_reading(self, diffusion: SDEFunction, t: Tensor, y0: Tensor) -> None:
        if self.sde_type == "stratonovich" and diffusion_depends_on_state(diffusion, t, y0):
            warnings.warn(
                f"torchsde.{self.method} reads the SDE as Stratonovich, and the diffusion "
                "depends on the state, so the result is not the Itô solution; for an Itô SDE "
                "pass the drift mu - sigma * dsigma/dy / 2 or use an Itô method "
                "(euler_maruyama, torchsde.euler, torchsde.milstein, torchsde.srk).",
                UserWarning,
                stacklevel=3,
            )

    def integrate(
        self,
        drift: SDEFunction,
        diffusion: SDEFunction,
        y0: Tensor,
        t: Tensor,
        *,
        brownian: BrownianMotion | None = None,
        generator: torch.Generator | None = None,
    ) -> Solution:
        """Solve from ``t[0]`` through every time of ``t``; see the class and module docs."""
        from torchsde._core.base_sde import ForwardSDE
        from torchsde._core.methods import select

        times = [float(v) for v in t.detach().cpu()]
        sign = 1.0 if times[1] > times[0] else -1.0
        self._check_reading(diffusion, t[0], y0)
        sde = _SolverTimeSDE(drift, diffusion, sign, self.sde_type)
        bm = self._solver_brownian(brownian, generator, times, sign, y0)
        solver = select(method=self.method, sde_type=self.sde_type)(
            sde=ForwardSDE(sde),
            bm=bm,
            dt=None,
            adaptive=False,
            rtol=None,
            atol=None,
            dt_min=None,
            options={},
        )

        def clock(value: float) -> Tensor:
            return torch.as_tensor(sign * value, dtype=y0.dtype, device=y0.device)

        y, states, n_steps = y0, [y0], 0
        extra = solver.init_extra_solver_state(clock(times[0]), y0)
        for (a, b), n in zip(itertools.pairwise(times), self.step_counts(times), strict=True):
            for ta, tb in equal_steps(a, b, n):
                y, extra = solver.step(clock(ta), clock(tb), y, extra)
            n_steps += n
            if not bool(torch.isfinite(y).all()):
                raise NonFiniteStateError(
                    f"torchsde.{self.method}: the state became NaN or Inf between t={a:g} and "
                    f"t={b:g}; check the drift and diffusion, or take smaller steps (n_steps, "
                    "step_size).",
                    t=a,
                )
            states.append(y)
        stats = SolverStats(nfe=sde.nfe, n_accepted=n_steps, t_reached=times[-1])
        return Solution(ts=t, ys=torch.stack(states), stats=stats)


class TorchsdeEuler(TorchsdeSDEIntegrator):
    """torchsde's Euler-Maruyama (Itô): strong order 0.5 (1.0 for additive noise), weak 1."""

    method: ClassVar[str] = "euler"
    strong_order: ClassVar[float] = 0.5
    additive_strong_order: ClassVar[float] = 1.0
    weak_order: ClassVar[float] = 1.0
    sde_type: ClassVar[SDEType] = "ito"


class TorchsdeMilstein(TorchsdeSDEIntegrator):
    """torchsde's Itô Milstein scheme (``sigma dsigma/dy`` by autograd): strong order 1, weak 1."""

    method: ClassVar[str] = "milstein"
    strong_order: ClassVar[float] = 1.0
    additive_strong_order: ClassVar[float] = 1.0
    weak_order: ClassVar[float] = 1.0
    sde_type: ClassVar[SDEType] = "ito"


class TorchsdeSRK(TorchsdeSDEIntegrator):
    """torchsde's stochastic Runge-Kutta (Rößler's SRI for diagonal noise, Itô): strong 1.5."""

    method: ClassVar[str] = "srk"
    strong_order: ClassVar[float] = 1.5
    additive_strong_order: ClassVar[float] = 1.5
    weak_order: ClassVar[float] = 1.5
    sde_type: ClassVar[SDEType] = "ito"
    levy_area: ClassVar[str] = "space-time"


class TorchsdeReversibleHeun(TorchsdeSDEIntegrator):
    """torchsde's reversible Heun scheme (Stratonovich): strong 0.5 (1.0 additive), weak 1."""

    method: ClassVar[str] = "reversible_heun"
    strong_order: ClassVar[float] = 0.5
    additive_strong_order: ClassVar[float] = 1.0
    weak_order: ClassVar[float] = 1.0
    sde_type: ClassVar[SDEType] = "stratonovich"


SDE_INTEGRATORS: tuple[type[TorchsdeSDEIntegrator], ...] = (
    TorchsdeEuler,
    TorchsdeMilstein,
    TorchsdeSRK,
    TorchsdeReversibleHeun,
)
"""The classes the ``torchsde`` plugin registers as ``torchsde.<method>``."""


@hookimpl
def flowkit_register_sde_integrators(register: Register) -> None:
    """Register torchsde's SDE solvers as ``torchsde.<method>`` (kind ``sde_integrator``)."""
    for cls in SDE_INTEGRATORS:
        register(f"torchsde.{cls.method}", cls)
