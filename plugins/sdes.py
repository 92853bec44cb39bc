"""Built-in plugin: the noising SDEs of score-based models (``vp``, ``subvp``, ``ve``).

All three have an affine drift and a diffusion independent of the state, so
their perturbation kernels are Gaussian and known exactly:

* ``vp`` (variance preserving, DDPM's continuous limit): a linear schedule
  ``beta(s) = beta_min + (beta_max - beta_min) s / T``, drift
  ``-beta(s) x / 2``, diffusion ``sqrt(beta(s))``; kernel
  ``alpha = exp(-B/2)``, ``sigma^2 = 1 - exp(-B)`` with
  ``B(s) = integral_0^s beta``. Prior ``N(0, I)``.
* ``subvp`` (sub-variance preserving): the same drift, diffusion
  ``sqrt(beta(s) (1 - exp(-2 B(s))))``, kernel ``alpha = exp(-B/2)``,
  ``sigma = 1 - exp(-B)`` (always below VP's). Prior ``N(0, I)``.
* ``ve`` (variance exploding, SMLD's continuous limit): no drift,
  ``sigma_s = sigma_min (sigma_max / sigma_min)^(s / T)``, diffusion
  ``sigma_s sqrt(2 log(sigma_max / sigma_min) / T)``; kernel ``alpha = 1``,
  ``sigma^2 = sigma_s^2 - sigma_min^2``: the exact variance of the SDE started
  at ``x0`` (Song et al.'s code uses ``sigma_s`` itself, an approximation that
  is off by ``sigma_min^2``). Prior ``N(0, sigma_max^2 I)``.

Defaults are those of Song et al. (2021): ``beta_min = 0.1``,
``beta_max = 20``, ``sigma_min = 0.01``, ``sigma_max = 50``, ``end_time = 1``;
``start_time = 1e-5`` (their likelihood cut-off) for every SDE. ``sigma_max``
should be about the largest distance between data points (50 suits images in
[0, 1]; a few units suit standardised tabular data).

Differences ``1 - exp(-B)`` are computed with ``expm1`` so that small times
keep full relative precision.

References:
    Song et al., "Score-Based Generative Modeling through Stochastic
    Differential Equations", ICLR 2021.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from flowkit.hookspecs import Register, hookimpl
from flowkit.interfaces import SDE, GaussianPrior

__all__ = ["SubVPSDE", "VESDE", "VPSDE", "flowkit_register_sdes"]


def _positive(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}.")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be positive and finite, got {value!r}.")
    return float(value)


class VPSDE(SDE):
    """The variance-preserving SDE with a linear ``beta`` schedule; see the module docs.

    Arguments:
        beta_min, beta_max: the schedule's values at ``s = 0`` and ``s = end_time``
            (``0 < beta_min <= beta_max``).
        end_time, start_time: see :class:`flowkit.interfaces.SDE`.

    Example:
        >>> import torch
        >>> alpha, sigma = VPSDE().kernel(torch.tensor(1.0, dtype=torch.float64))
        >>> round(float(alpha**2 + sigma**2), 12)
        1.0
    """

    def __init__(
        self,
        *,
        beta_min: float = 0.1,
        beta_max: float = 20.0,
        end_time: float = 1.0,
        start_time: float = 1e-5,
    ) -> None:
        super().__init__(end_time=end_time, start_time=start_time)
        self.beta_min = _positive("beta_min", beta_min)
        self.beta_max = _positive("beta_max", beta_max)
        if self.beta_max < self.beta_min:
            raise ValueError(f"beta_max={beta_max} must be >= beta_min={beta_min}.")

    def beta(self, s: Tensor) -> Tensor:
        """The noise rate ``beta(s)``."""
        return self.beta_min + (self.beta_max - self.beta_min) * s / self.end_time

    def integrated_beta(self, s: Tensor) -> Tensor:
        """``B(s) = integral_0^s beta``."""
        return self.beta_min * s + 0.5 * (self.beta_max - self.beta_min) * s**2 / self.end_time

    def drift(self, x: Tensor, s: Tensor) -> Tensor:
        beta = self.beta(s)
        return -0.5 * (beta.unsqueeze(-1) if beta.dim() == 1 else beta) * x

    def diffusion(self, s: Tensor) -> Tensor:
        return torch.sqrt(self.beta(s))

    def kernel(self, s: Tensor) -> tuple[Tensor, Tensor]:
        big_b = self.integrated_beta(s)
        return torch.exp(-0.5 * big_b), torch.sqrt(-torch.expm1(-big_b))

    def prior(self, dim: int) -> GaussianPrior:
        return GaussianPrior(dim, 1.0)

    def __repr__(self) -> str:
        return f"VPSDE(beta_min={self.beta_min:g}, beta_max={self.beta_max:g})"


class SubVPSDE(VPSDE):
    """The sub-variance-preserving SDE (VP's drift, smaller noise); see the module docs."""

    def diffusion(self, s: Tensor) -> Tensor:
        return torch.sqrt(self.beta(s) * -torch.expm1(-2.0 * self.integrated_beta(s)))

    def kernel(self, s: Tensor) -> tuple[Tensor, Tensor]:
        big_b = self.integrated_beta(s)
        return torch.exp(-0.5 * big_b), -torch.expm1(-big_b)

    def __repr__(self) -> str:
        return f"SubVPSDE(beta_min={self.beta_min:g}, beta_max={self.beta_max:g})"


class VESDE(SDE):
    """The variance-exploding SDE with a geometric noise scale; see the module docs.

    Arguments:
        sigma_min, sigma_max: the noise scale at ``s = 0`` and ``s = end_time``
            (``0 < sigma_min < sigma_max``).
        end_time, start_time: see :class:`flowkit.interfaces.SDE`.
    """

    def __init__(
        self,
        *,
        sigma_min: float = 0.01,
        sigma_max: float = 50.0,
        end_time: float = 1.0,
        start_time: float = 1e-5,
    ) -> None:
        super().__init__(end_time=end_time, start_time=start_time)
        self.sigma_min = _positive("sigma_min", sigma_min)
        self.sigma_max = _positive("sigma_max", sigma_max)
        if self.sigma_max <= self.sigma_min:
            raise ValueError(f"sigma_max={sigma_max} must be > sigma_min={sigma_min}.")
        self._log_ratio = math.log(self.sigma_max / self.sigma_min)

    def noise_scale(self, s: Tensor) -> Tensor:
        """``sigma_min (sigma_max / sigma_min)^(s / T)``."""
        return self.sigma_min * torch.exp(self._log_ratio * s / self.end_time)

    def drift(self, x: Tensor, s: Tensor) -> Tensor:
        return torch.zeros_like(x)

    def diffusion(self, s: Tensor) -> Tensor:
        return self.noise_scale(s) * math.sqrt(2.0 * self._log_ratio / self.end_time)

    def kernel(self, s: Tensor) -> tuple[Tensor, Tensor]:
        # sigma_s^2 - sigma_min^2 = sigma_min^2 expm1(2 log(r) s / T), exact at small s.
        variance = self.sigma_min**2 * torch.expm1(2.0 * self._log_ratio * s / self.end_time)
        return torch.ones_like(s), torch.sqrt(variance)

    def prior(self, dim: int) -> GaussianPrior:
        return GaussianPrior(dim, self.sigma_max)

    def __repr__(self) -> str:
        return f"VESDE(sigma_min={self.sigma_min:g}, sigma_max={self.sigma_max:g})"


@hookimpl
def flowkit_register_sdes(register: Register) -> None:
    """Register ``vp``, ``subvp`` and ``ve``."""
    register("vp", VPSDE)
    register("subvp", SubVPSDE)
    register("ve", VESDE)
