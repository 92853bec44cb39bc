"""torchdiffeq's ``latent_ode.py``: a latent ODE on noisy spirals (RNN encoder, ODE decoder).

An RNN reads each observed spiral piece backward in time and gives the
posterior ``q(z0)``; ``z0`` is sampled by reparametrisation, solved forward
through the sample times by the latent field, decoded, and the negative ELBO
(Gaussian likelihood plus the analytic KL to ``N(0, I)``) is minimised with
Adam. The data follow the script's two Archimedean spirals (clockwise and
counter-clockwise, ``r = a + b * theta``), drawn from a seeded generator.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from examples_torchdiffeq.common import (
    ExampleRun,
    SolverModule,
    parameters_of,
    seeded,
    solver_function,
)

__all__ = ["Decoder", "LatentField", "RecognitionRNN", "run", "spirals"]


def spirals(
    generator: torch.Generator,
    *,
    nspiral: int,
    ntotal: int,
    nsample: int,
    noise_std: float,
    a: float = 0.0,
    b: float = 0.3,
    stop: float = 6 * math.pi,
) -> tuple[Tensor, Tensor]:
    """Noisy pieces of ``nsample`` points of the two spirals; ``(samples, sample_times)``."""
    orig_ts = torch.linspace(0.0, stop, ntotal, dtype=torch.float64)
    zs_cw = stop + 1.0 - orig_ts
    rs_cw = a + b * 50.0 / zs_cw
    clockwise = torch.stack([rs_cw * torch.cos(zs_cw) - 5.0, rs_cw * torch.sin(zs_cw)], dim=1)
    rs_cc = a + b * orig_ts
    counter = torch.stack([rs_cc * torch.cos(orig_ts) + 5.0, rs_cc * torch.sin(orig_ts)], dim=1)
    pieces = []
    for _ in range(nspiral):
        start = nsample + int(torch.randint(ntotal - 2 * nsample, (1,), generator=generator))
        orig = counter if bool(torch.rand((), generator=generator) > 0.5) else clockwise
        piece = orig[start : start + nsample]
        pieces.append(
            piece + noise_std * torch.randn(piece.shape, generator=generator, dtype=piece.dtype)
        )
    return torch.stack(pieces).float(), orig_ts[:nsample].float()


class LatentField(nn.Module):
    """The latent dynamics: latent -> hidden (ELU) -> hidden (ELU) -> latent."""

    def __init__(self, latent_dim: int = 4, nhidden: int = 20) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(latent_dim, nhidden),
            nn.ELU(),
            nn.Linear(nhidden, nhidden),
            nn.ELU(),
            nn.Linear(nhidden, latent_dim),
        )

    def forward(self, t: Tensor, x: Tensor) -> Tensor:
        return self.net(x)


class RecognitionRNN(nn.Module):
    """An Elman RNN whose last output holds the mean and log-variance of ``q(z0)``."""

    def __init__(self, latent_dim: int = 4, obs_dim: int = 2, nhidden: int = 25) -> None:
        super().__init__()
        self.nhidden = nhidden
        self.i2h = nn.Linear(obs_dim + nhidden, nhidden)
        self.h2o = nn.Linear(nhidden, latent_dim * 2)

    def forward(self, x: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
        h = torch.tanh(self.i2h(torch.cat((x, h), dim=1)))
        return self.h2o(h), h


class Decoder(nn.Module):
    """latent -> hidden (ReLU) -> observation."""

    def __init__(self, latent_dim: int = 4, obs_dim: int = 2, nhidden: int = 20) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(latent_dim, nhidden), nn.ReLU(), nn.Linear(nhidden, obs_dim)
        )

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z)


def _log_normal_pdf(x: Tensor, mean: Tensor, logvar: Tensor) -> Tensor:
    return -0.5 * (math.log(2.0 * math.pi) + logvar + (x - mean) ** 2 / torch.exp(logvar))


def _normal_kl(mu1: Tensor, lv1: Tensor, mu2: Tensor, lv2: Tensor) -> Tensor:
    v1, v2 = torch.exp(lv1), torch.exp(lv2)
    return lv2 / 2.0 - lv1 / 2.0 + (v1 + (mu1 - mu2) ** 2) / (2.0 * v2) - 0.5


def run(
    solvers: SolverModule,
    *,
    iterations: int = 3,
    nspiral: int = 16,
    ntotal: int = 200,
    nsample: int = 25,
    noise_std: float = 0.3,
    latent_dim: int = 4,
    adjoint: bool = False,
    seed: int = 0,
) -> ExampleRun:
    """Train for ``iterations`` steps; the negative ELBOs and the weights."""
    odeint = solver_function(solvers, adjoint)
    torch.manual_seed(seed)
    samples, sample_ts = spirals(
        seeded(seed), nspiral=nspiral, ntotal=ntotal, nsample=nsample, noise_std=noise_std
    )
    func, rec, dec = LatentField(latent_dim), RecognitionRNN(latent_dim), Decoder(latent_dim)
    params = [*func.parameters(), *dec.parameters(), *rec.parameters()]
    optimizer = torch.optim.Adam(params, lr=0.01)
    result = ExampleRun()
    for _ in range(iterations):
        optimizer.zero_grad()
        h = torch.zeros(nspiral, rec.nhidden)
        for i in reversed(range(nsample)):
            out, h = rec(samples[:, i, :], h)
        qz0_mean, qz0_logvar = out[:, :latent_dim], out[:, latent_dim:]
        z0 = torch.randn(qz0_mean.size()) * torch.exp(0.5 * qz0_logvar) + qz0_mean
        pred_x = dec(odeint(func, z0, sample_ts).permute(1, 0, 2))
        noise_logvar = 2.0 * torch.log(torch.full(pred_x.size(), noise_std))
        logpx = _log_normal_pdf(samples, pred_x, noise_logvar).sum(-1).sum(-1)
        zeros = torch.zeros(z0.size())
        kl = _normal_kl(qz0_mean, qz0_logvar, zeros, zeros).sum(-1)
        loss = torch.mean(-logpx + kl, dim=0)
        loss.backward()
        optimizer.step()
        result.losses.append(loss.item())
    result.parameters = parameters_of(func, rec, dec)
    return result
