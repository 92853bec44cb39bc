"""Flow matching against closed forms: Gaussian endpoints under the independent coupling.

With x0 ~ N(0, I), x1 ~ N(mu, s^2 I) independent and the path
x_t = (1 - t) x0 + t x1 + sigma eps, x_t ~ N(t mu, V(t) I) with
V(t) = (1 - t)^2 + t^2 s^2 + sigma^2, and the marginal velocity is the regression
of x1 - x0 on x_t:

    u(x, t) = mu + (t s^2 - (1 - t)) / V(t) * (x - t mu).

It minimises the flow-matching loss, so the loss gradient in the direction of any
perturbation v vanishes at u (statistically) and not at u + theta v; and for
sigma = 0 its flow carries N(0, I) to N(t mu, V(t) I), which a flowkit CNF built
on it reproduces in log-density. Conditionally, with x1 | c ~ N(c, s^2 I), the same
formula with mu = c is the minimiser among fields that see the context c.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor, nn

import flowkit
from flowkit.matching import flow_matching_loss

MU = torch.tensor([1.5, -0.5])
S = 0.5


def variance(t: Tensor | float, sigma: float = 0.0) -> Tensor | float:
    return (1 - t) ** 2 + t**2 * S**2 + sigma**2


class MarginalVelocity(nn.Module):
    """``u(x, t) + theta * v(t, x)`` with ``v = sin(x) + t``, a scalar-t field."""

    def __init__(self, sigma: float = 0.0, theta: float = 0.0) -> None:
        super().__init__()
        self.sigma = sigma
        self.register_buffer("mu", MU.clone())
        self.theta = nn.Parameter(torch.tensor(float(theta)))

    def forward(self, t: Tensor, x: Tensor) -> Tensor:
        t = torch.as_tensor(t, dtype=x.dtype)
        slope = (t * S**2 - (1 - t)) / variance(t, self.sigma)
        u = self.mu + slope * (x - t * self.mu)
        return u + self.theta * (torch.sin(x) + t)


class ConditionalMarginalVelocity(MarginalVelocity):
    """The marginal velocity given the context: the data mean is the context row."""

    def forward(self, t: Tensor, x: Tensor, context: Tensor) -> Tensor:
        t = torch.as_tensor(t, dtype=x.dtype)
        slope = (t * S**2 - (1 - t)) / variance(t, self.sigma)
        u = context + slope * (x - t * context)
        return u + self.theta * (torch.sin(x) + t)


def _gradient_statistics(
    sigma: float, theta: float, chunks: int = 100, batch: int = 200, conditional: bool = False
) -> tuple[float, float]:
    """Mean and standard error of the loss gradient in theta over independent minibatches.

    Conditional: x1 | c ~ N(c, s^2 I) with c ~ MU + N(0, I), the field sees c as context.
    """
    g = torch.Generator().manual_seed(2024)
    field = (ConditionalMarginalVelocity if conditional else MarginalVelocity)(sigma, theta)
    grads = []
    for _ in range(chunks):
        x0 = torch.randn(batch, 2, generator=g)
        context = MU + torch.randn(batch, 2, generator=g) if conditional else None
        x1 = (MU if context is None else context) + S * torch.randn(batch, 2, generator=g)
        loss = flow_matching_loss(field, x0, x1, sigma=sigma, context=context, generator=g)
        (grad,) = torch.autograd.grad(loss, field.theta)
        grads.append(grad)
    values = torch.stack(grads)
    return float(values.mean()), float(values.std() / math.sqrt(chunks))


@pytest.mark.parametrize("conditional", [False, True])
@pytest.mark.parametrize("sigma", [0.0, 0.3])
def test_loss_gradient_vanishes_at_the_marginal_velocity(sigma: float, conditional: bool) -> None:
    mean, stderr = _gradient_statistics(sigma, theta=0.0, conditional=conditional)
    assert abs(mean) < 4 * stderr, (mean, stderr)


@pytest.mark.parametrize("conditional", [False, True])
@pytest.mark.parametrize("sigma", [0.0, 0.3])
@pytest.mark.parametrize("theta", [-0.2, 0.2])
def test_loss_gradient_is_significant_at_a_perturbed_field(
    sigma: float, theta: float, conditional: bool
) -> None:
    """d/dtheta E||u + theta v - target||^2 = 2 theta E||v||^2: the sign of theta, far from 0."""
    mean, stderr = _gradient_statistics(sigma, theta, conditional=conditional)
    assert math.copysign(1.0, mean) == math.copysign(1.0, theta)
    assert abs(mean) > 10 * stderr, (mean, stderr)


@pytest.mark.parametrize("t1", [1.0, 0.5, 0.9])
def test_cnf_on_the_marginal_velocity_has_the_gaussian_marginal(t1: float) -> None:
    model = flowkit.CNF(
        MarginalVelocity(),
        "dopri5",
        "exact",
        "backprop",
        dim=2,
        t1=t1,
        integrator_options={"rtol": 1e-10, "atol": 1e-10},
    )
    x = torch.randn(16, 2, generator=torch.Generator().manual_seed(5)) + t1 * MU
    var = variance(t1)
    expected = -0.5 * (x - t1 * MU).pow(2).sum(-1) / var - math.log(2 * math.pi * var)
    with torch.no_grad():
        torch.testing.assert_close(model.log_prob(x), expected, rtol=0, atol=1e-6)
