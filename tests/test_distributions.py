"""The one standard normal log-density against torch's own."""

from __future__ import annotations

import torch

from flowkit.cnf import StandardNormal
from flowkit.distributions import standard_normal_log_prob


def test_standard_normal_log_prob_matches_torch() -> None:
    z = torch.randn(5, 4, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    ref = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(-1)
    torch.testing.assert_close(standard_normal_log_prob(z), ref, rtol=0, atol=1e-12)
    torch.testing.assert_close(StandardNormal(3).log_prob(z), ref, rtol=0, atol=1e-12)
