"""The SDE contract: a noising process with a closed-form Gaussian perturbation kernel.

Score-based generative models (Song et al., 2021) noise data with an Itô SDE

    dx = f(x, s) ds + g(s) dw,    s in [0, T],

in **diffusion time** ``s``: data at ``s = 0``, (nearly) pure noise at
``s = T``. flowkit's CNFs run the other way (base at ``t0``, data at ``t1``);
:class:`flowkit.sde.DiffusionClock` is the one place that maps between the
two, so every SDE here speaks diffusion time only.

References:
    Song et al., "Score-Based Generative Modeling through Stochastic
    Differential Equations", ICLR 2021.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import ClassVar

import torch
from torch import Tensor

__all__ = ["SDE", "GaussianPrior"]

_LOG_2PI = math.log(2 * math.pi)


class GaussianPrior:
    """The isotropic normal ``N(0, std^2 I_dim)``: the prior of an SDE at its end time.

    Arguments:
        dim: the dimension.
        std: the standard deviation (positive).
    """

    def __init__(self, dim: int, std: float = 1.0) -> None:
        if not std > 0 or not math.isfinite(std):
            raise ValueError(f"std must be positive and finite, got {std!r}.")
        self.dim = dim
        self.std = float(std)

    def log_prob(self, z: Tensor) -> Tensor:
        """``log N(z; 0, std^2 I)`` per row, shape ``(batch,)``."""
        d = z.shape[-1]
        return -0.5 * z.pow(2).sum(-1) / self.std**2 - d * math.log(self.std) - 0.5 * d * _LOG_2PI

    def sample(
        self,
        sample_shape: tuple[int, ...] | list[int] | torch.Size = (),
        *,
        generator: torch.Generator | None = None,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> Tensor:
        """Samples of shape ``(*sample_shape, dim)``."""
        shape = (*tuple(sample_shape), self.dim)
        return self.std * torch.randn(shape, generator=generator, dtype=dtype, device=device)

    def __repr__(self) -> str:
        return f"GaussianPrior(dim={self.dim}, std={self.std:g})"


class SDE(ABC):
    """A noising process ``dx = f(x, s) ds + g(s) dw`` with a Gaussian perturbation kernel.

    Contract:
        * Time is diffusion time ``s`` in ``[0, end_time]`` (data at 0). A time
          argument ``s`` is a tensor: 0-d (one time for the whole batch) or of
          shape ``(batch,)`` (one time per sample); results broadcast against
          the batch.
        * :meth:`drift` returns ``f(x, s)`` with ``x``'s shape; :meth:`diffusion`
          returns the scalar diffusion ``g(s)`` with ``s``'s shape (the noise is
          the same in every coordinate and independent of ``x``, so Itô and
          Stratonovich readings coincide).
        * :meth:`kernel` returns ``(alpha(s), sigma(s))`` with ``s``'s shape:
          the perturbation kernel is ``p_s(x | x0) = N(alpha(s) x0, sigma(s)^2 I)``,
          exactly (not an approximation), so that the drift and diffusion
          satisfy the moment equations of the Fokker-Planck equation:
          ``d alpha/ds = a(s) alpha`` and ``d sigma^2/ds = 2 a(s) sigma^2 + g(s)^2``
          where ``f(x, s) = a(s) x``. The conformance kit
          (:func:`flowkit.testing.sde_checks.check_sde`) checks both.
        * :meth:`prior` is the density that samples start from at ``end_time``
          (an object with ``log_prob`` and ``sample`` like a CNF's base).
        * ``start_time`` is the smallest time the model is used at (sampling
          stops there, likelihoods start there): ``sigma(0) = 0`` makes the
          score singular at 0.
        * Options are keyword arguments of the constructor; bad values raise
          ``ValueError`` at construction.

    Capabilities (class attributes): none yet; ``capability_names`` is empty.
    """

    capability_names: ClassVar[tuple[str, ...]] = ()

    def __init__(self, *, end_time: float = 1.0, start_time: float = 1e-5) -> None:
        if not (math.isfinite(end_time) and end_time > 0):
            raise ValueError(f"end_time must be positive and finite, got {end_time!r}.")
        if not (0 <= start_time < end_time):
            raise ValueError(f"start_time must be in [0, end_time={end_time}), got {start_time!r}.")
        self.end_time = float(end_time)
        self.start_time = float(start_time)

    @abstractmethod
    def drift(self, x: Tensor, s: Tensor) -> Tensor:
        """The drift ``f(x, s)``, shape of ``x``."""

    @abstractmethod
    def diffusion(self, s: Tensor) -> Tensor:
        """The diffusion ``g(s)``, shape of ``s``."""

    @abstractmethod
    def kernel(self, s: Tensor) -> tuple[Tensor, Tensor]:
        """``(alpha(s), sigma(s))`` of the kernel ``N(alpha x0, sigma^2 I)``, shape of ``s``."""

    @abstractmethod
    def prior(self, dim: int) -> GaussianPrior:
        """The density samples start from at ``end_time``."""

    # -- derived from the kernel ---------------------------------------------------
    def marginal(self, x0: Tensor, s: Tensor) -> tuple[Tensor, Tensor]:
        """Mean ``alpha(s) x0`` (shape of ``x0``) and std ``sigma(s)`` (a column per sample).

        The std has shape ``(batch, 1)`` for per-sample times and ``()`` for
        one time, so it broadcasts against ``x0``.
        """
        alpha, sigma = self.kernel(s)
        alpha, sigma = _column(alpha), _column(sigma)
        return alpha * x0, sigma

    def perturb(self, x0: Tensor, s: Tensor, noise: Tensor) -> Tensor:
        """A sample of ``p_s(x | x0)``: ``alpha(s) x0 + sigma(s) noise``."""
        mean, std = self.marginal(x0, s)
        return mean + std * noise

    def reverse_drift(self, x: Tensor, s: Tensor, score: Tensor) -> Tensor:
        """The drift of the reverse-time SDE, ``f(x, s) - g(s)^2 score`` (run with ``ds < 0``)."""
        return self.drift(x, s) - _column(self.diffusion(s)) ** 2 * score

    def probability_flow_drift(self, x: Tensor, s: Tensor, score: Tensor) -> Tensor:
        """The probability flow ODE's velocity ``f(x, s) - g(s)^2 score / 2`` (same marginals)."""
        return self.drift(x, s) - 0.5 * _column(self.diffusion(s)) ** 2 * score


def _column(value: Tensor) -> Tensor:
    """A per-sample value of shape ``(batch,)`` as a ``(batch, 1)`` column; 0-d unchanged."""
    return value.unsqueeze(-1) if value.dim() == 1 else value
