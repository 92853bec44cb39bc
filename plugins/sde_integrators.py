"""Built-in plugin: flowkit's native SDE integrator, ``euler_maruyama``.

Euler-Maruyama steps ``y <- y + mu(t, y) dt + sigma(t, y) dW`` with
``dW ~ N(0, |dt| I)``: strong order 0.5 in general, 1.0 for additive noise
(a diffusion independent of the state, as in every built-in noising SDE),
weak order 1. It runs forward or backward in time (the reverse-time SDE of a
score model steps with ``dt < 0``) on the fixed grid of
:meth:`~flowkit.interfaces.SDEIntegrator.step_counts`, taking increments from
a given Brownian motion or drawing them from a generator.

References:
    Kloeden and Platen, "Numerical Solution of Stochastic Differential
    Equations", Springer 1992, section 10.2.
"""

from __future__ import annotations

import itertools
import math
from typing import ClassVar

import torch
from torch import Tensor

from flowkit.errors import NonFiniteStateError
from flowkit.hookspecs import Register, hookimpl
from flowkit.interfaces import BrownianMotion, SDEIntegrator
from flowkit.interfaces.sde_integrator import SDEFunction
from flowkit.solution import Solution, SolverStats

__all__ = [
    "EulerMaruyama",
    "brownian_increment",
    "equal_steps",
    "flowkit_register_sde_integrators",
]


def equal_steps(a: float, b: float, n: int) -> list[tuple[float, float]]:
    """The ``n`` equal steps ``(ta, tb)`` from ``a`` to ``b`` (either direction).

    The last step ends exactly at ``b``, so round-off never leaves a sliver;
    every flowkit SDE integrator steps on this grid, which makes their
    Brownian queries (and Euler-Maruyama's numbers) the same.
    """
    h = (b - a) / n
    return [(a + k * h, a + (k + 1) * h if k < n - 1 else b) for k in range(n)]


def brownian_increment(
    ta: float,
    tb: float,
    like: Tensor,
    *,
    brownian: BrownianMotion | None,
    generator: torch.Generator | None,
) -> Tensor:
    """The Brownian increment of a step from ``ta`` to ``tb`` (either direction).

    From ``brownian`` (queried as ``brownian(min, max)``) when given, else a
    draw ``N(0, |tb - ta| I)`` of ``like``'s shape, dtype and device from
    ``generator``.
    """
    if brownian is not None:
        increment = brownian(min(ta, tb), max(ta, tb))
        return increment.to(dtype=like.dtype, device=like.device)
    noise = torch.randn(like.shape, generator=generator, dtype=like.dtype, device=like.device)
    return noise * math.sqrt(abs(tb - ta))


class EulerMaruyama(SDEIntegrator):
    """The Euler-Maruyama method (Itô); see the module docs.

    Arguments:
        step_size, n_steps: see :class:`~flowkit.interfaces.SDEIntegrator`.

    Example:
        >>> import torch
        >>> em = EulerMaruyama(n_steps=10)
        >>> g = torch.Generator().manual_seed(0)
        >>> sol = em.integrate(lambda t, y: -y, lambda t, y: torch.zeros_like(y),
        ...                    torch.ones(1, 1), torch.tensor([0.0, 1.0]), generator=g)
        >>> round(float(sol.ys[-1]), 6)  # zero noise: explicit Euler, 0.9 ** 10
        0.348678
    """

    strong_order: ClassVar[float] = 0.5
    additive_strong_order: ClassVar[float] = 1.0
    weak_order: ClassVar[float] = 1.0
    sde_type = "ito"

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
        times = [float(v) for v in t.detach().cpu()]
        counts = self.step_counts(times)
        y, states, nfe = y0, [y0], 0
        for (a, b), n in zip(itertools.pairwise(times), counts, strict=True):
            for ta, tb in equal_steps(a, b, n):
                tt = torch.as_tensor(ta, dtype=t.dtype, device=t.device)
                dw = brownian_increment(ta, tb, y, brownian=brownian, generator=generator)
                y = y + drift(tt, y) * (tb - ta) + diffusion(tt, y) * dw
                nfe += 1
            if not torch.isfinite(y).all():
                raise NonFiniteStateError(
                    f"euler_maruyama: the state became NaN or Inf by t={b:g}; check the drift "
                    "and diffusion, or take smaller steps (n_steps, step_size)."
                )
            states.append(y)
        stats = SolverStats(nfe=nfe, n_accepted=nfe, t_reached=times[-1])
        return Solution(ts=t, ys=torch.stack(states), stats=stats)


@hookimpl
def flowkit_register_sde_integrators(register: Register) -> None:
    """Register ``euler_maruyama`` (alias ``em``)."""
    register("euler_maruyama", EulerMaruyama, aliases=("em",))
