"""Built-in plugin: torchsde's solvers that integrate an ODE exactly at zero diffusion.

``torchsde.euler``, ``torchsde.midpoint``, ``torchsde.heun`` and
``torchsde.reversible_heun`` run the ODE as an SDE with zero (diagonal)
diffusion and a zero Brownian motion, so they are deterministic ODE solvers of
order 1, 2, 2 and 2. The SDE type each method needs (Itô for ``euler``,
Stratonovich for the others) is read from torchsde's solver classes.

torchsde wants a ``(batch, d)`` state and increasing times, so tuple states are
flattened into one ``(1, N)`` row and backward integration runs in reversed
time ``s = -t``. Each interval between output times is a separate torchsde
call with an equal step dividing it (torchsde would otherwise interpolate
output times linearly and lose the method's order); one-step methods restart
harmlessly at the output times. ``reversible_heun`` restarts its auxiliary
state there.

``torchsde.reversible_heun`` declares ``reversible=True``:
:meth:`ReversibleHeun.integrate_reversible` uses
``torchsde.sdeint_adjoint(method="reversible_heun",
adjoint_method="adjoint_reversible_heun")``, whose backward pass reconstructs
the forward states algebraically, so its gradients equal backpropagation
through the same steps to round-off, in memory independent of the step count.

The same plugin registers torchsde's solvers with real noise as
``sde_integrator`` components of the same names
(:mod:`flowkit.plugins.torchsde_sde`).

Options: ``step_size`` (the largest step; flowkit's name for every fixed-step
integrator, passed to torchsde as its ``dt``) or ``n_steps`` (equal steps
across the whole span; default 100 when neither is given).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from flowkit.plugins.torchsde_sde import flowkit_register_sde_integrators
from torch import Tensor, nn

from flowkit.errors import NonFiniteStateError
from flowkit.hookspecs import Register, hookimpl
from flowkit.interfaces import FixedStepIntegrator, SupportsReversibleSolve
from flowkit.solution import Solution, SolverStats
from flowkit.state import Dynamics, State, as_tuple, flatten_state, like, unflatten_state

__all__ = [
    "ODE_ORDER",
    "TorchsdeIntegrator",
    "flowkit_register_integrators",
    "flowkit_register_sde_integrators",
]

ODE_ORDER: dict[str, int] = {"euler": 1, "midpoint": 2, "heun": 2, "reversible_heun": 2}
"""The order of each registered torchsde method on an ODE (zero diffusion)."""


def _sde_type(method: str) -> str:
    from torchsde._core import methods
    from torchsde.settings import SDE_TYPES

    for sde_type in (SDE_TYPES.stratonovich, SDE_TYPES.ito):
        try:
            solver = methods.select(method, sde_type)
        except ValueError:
            continue
        declared = getattr(solver, "sde_type", sde_type)
        return str(declared)
    raise ImportError(f"torchsde has no method {method!r}")


def _zero_brownian_class() -> type:
    import torchsde

    class ZeroBrownian(torchsde.BaseBrownian):
        """A Brownian motion that is identically zero (the diffusion is zero anyway)."""

        __slots__ = ("_device", "_dtype", "_shape")

        def __init__(self, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device):
            self._shape = shape
            self._dtype = dtype
            self._device = device

        def __call__(  # torchsde's signature
            self,
            ta: Any,
            tb: Any = None,
            return_U: bool = False,  # noqa: N803
            return_A: bool = False,  # noqa: N803
        ):
            zero = torch.zeros(self._shape, dtype=self._dtype, device=self._device)
            if return_U and return_A:
                return zero, zero, zero
            if return_U or return_A:
                return zero, zero
            return zero

        def __repr__(self) -> str:
            return f"ZeroBrownian(shape={self._shape})"

        @property
        def dtype(self) -> torch.dtype:
            return self._dtype

        @property
        def device(self) -> torch.device:
            return self._device

        @property
        def shape(self) -> tuple[int, ...]:
            return self._shape

        @property
        def levy_area_approximation(self) -> str:
            return "none"

    return ZeroBrownian


class _ZeroNoiseSDE(nn.Module):
    """``dY = sign * func(sign * s, Y) ds`` with zero diagonal diffusion, on ``(1, N)`` rows."""

    noise_type = "diagonal"

    def __init__(
        self, func: Dynamics, template: State, sde_type: str, sign: float, stats: SolverStats
    ) -> None:
        super().__init__()
        self.func = func
        self.template = template
        self.sde_type = sde_type
        self.sign = sign
        self.stats = stats
        self.backward = False

    def f(self, s: Tensor, y: Tensor) -> Tensor:
        if self.backward:
            self.stats.backward_nfe += 1
        else:
            self.stats.nfe += 1
        state = unflatten_state(y[0], self.template)
        out = self.func(s * self.sign, state)
        flat = flatten_state(out).unsqueeze(0)
        return flat if self.sign > 0 else -flat

    def g(self, s: Tensor, y: Tensor) -> Tensor:
        return torch.zeros_like(y)


class TorchsdeIntegrator(FixedStepIntegrator):
    """A torchsde solver used as a fixed-step ODE integrator.

    Arguments:
        step_size, n_steps: as for every
            :class:`~flowkit.interfaces.FixedStepIntegrator`: each output
            interval is split into the equal steps of
            :meth:`~flowkit.interfaces.FixedStepIntegrator.step_counts`, each
            handed to torchsde as its ``dt``.

    Raises:
        TypeError: for an unknown option.
        ValueError: for both options, or non-positive values.
    """

    method: ClassVar[str] = ""
    adaptive: ClassVar[bool] = False

    def __init__(self, *, step_size: float | None = None, n_steps: int | None = None) -> None:
        super().__init__(step_size=step_size, n_steps=n_steps)

    def integrate(self, func: Dynamics, y0: State, t: Tensor) -> Solution:
        """Solve with ``torchsde.sdeint``; see :class:`~flowkit.interfaces.Integrator`."""
        return self._run(func, y0, t, params=None)

    def _run(
        self, func: Dynamics, y0: State, t: Tensor, params: Sequence[Tensor] | None
    ) -> Solution:
        import torchsde

        times = [float(x) for x in t.tolist()]
        sign = 1.0 if times[1] > times[0] else -1.0
        stats = SolverStats()
        sde = _ZeroNoiseSDE(func, y0, _sde_type(self.method), sign, stats)
        y = flatten_state(y0).unsqueeze(0)
        bm = _zero_brownian_class()(tuple(y.shape), y.dtype, y.device)
        outputs = [y]
        h = self.largest_step(times)
        for (a, b), m in zip(itertools.pairwise(times), self.step_counts(times), strict=True):
            h = abs(b - a) / m
            ts = torch.tensor([sign * a, sign * b], dtype=t.dtype, device=t.device)
            # A hair above |b - a| / m so that the m-th step is clipped onto b
            # instead of leaving a round-off sliver for an extra step.
            dt = h * (1.0 + 1e-10)
            if params is None:
                ys = torchsde.sdeint(sde, y, ts, bm=bm, method=self.method, dt=dt)
            else:
                ys = torchsde.sdeint_adjoint(
                    sde,
                    y,
                    ts,
                    bm=bm,
                    method=self.method,
                    adjoint_method="adjoint_reversible_heun",
                    dt=dt,
                    adjoint_params=tuple(params),
                )
            y = ys[-1]
            stats.n_accepted += m
            if not bool(torch.isfinite(y).all()):
                raise NonFiniteStateError(
                    f"torchsde.{self.method}: NaN or Inf in the state between t={a!r} and "
                    f"t={b!r}; use a smaller step or check the vector field for overflow.",
                    t=a,
                )
            outputs.append(y)
        sde.backward = True
        stacked = torch.cat(outputs, dim=0)
        leaves = as_tuple(y0)
        ys_leaves = []
        offset = 0
        for leaf in leaves:
            n = leaf.numel()
            ys_leaves.append(stacked[:, offset : offset + n].reshape(len(times), *leaf.shape))
            offset += n
        stats.final_step_size = h
        stats.t_reached = times[-1]
        return Solution(ts=t, ys=like(y0, tuple(ys_leaves)), stats=stats)


class Euler(TorchsdeIntegrator):
    """torchsde's Euler(-Maruyama) scheme: explicit Euler on an ODE (order 1)."""

    method: ClassVar[str] = "euler"
    order: ClassVar[int] = ODE_ORDER["euler"]


class Midpoint(TorchsdeIntegrator):
    """torchsde's midpoint scheme (Stratonovich): the explicit midpoint rule on an ODE."""

    method: ClassVar[str] = "midpoint"
    order: ClassVar[int] = ODE_ORDER["midpoint"]


class Heun(TorchsdeIntegrator):
    """torchsde's Heun scheme (Stratonovich): Heun's method on an ODE."""

    method: ClassVar[str] = "heun"
    order: ClassVar[int] = ODE_ORDER["heun"]


class ReversibleHeun(TorchsdeIntegrator, SupportsReversibleSolve):
    """torchsde's reversible Heun scheme: an algebraically reversible order-2 ODE solver.

    References:
        P. Kidger, J. Foster, X. Li, T. Lyons, "Efficient and accurate
        gradients for neural SDEs", NeurIPS 2021.
    """

    method: ClassVar[str] = "reversible_heun"
    order: ClassVar[int] = ODE_ORDER["reversible_heun"]
    reversible: ClassVar[bool] = True

    def integrate_reversible(
        self, func: Dynamics, y0: State, t: Tensor, params: Sequence[Tensor]
    ) -> Solution:
        """Solve with torchsde's reversible adjoint; gradients reach ``y0`` and ``params``."""
        return self._run(func, y0, t, params=tuple(params))


@hookimpl
def flowkit_register_integrators(register: Register) -> None:
    """Register the torchsde solvers usable on ODEs as ``torchsde.<method>``."""
    for cls in (Euler, Midpoint, Heun, ReversibleHeun):
        _sde_type(cls.method)  # fails registration loudly if torchsde lacks the method
        register(f"torchsde.{cls.method}", cls)
