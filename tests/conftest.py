"""Test configuration: hypothesis profiles and shared fixtures.

Profiles (chosen with ``FLOWKIT_HYPOTHESIS_PROFILE``; default ``ci`` when the
``CI`` environment variable is set, else ``dev``):
``dev`` quick and random; ``ci`` deterministic (derandomised, no database, no
deadline); ``nightly`` many more examples.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import torch
from hypothesis import HealthCheck, settings

settings.register_profile(
    "dev", max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "ci",
    max_examples=10,
    derandomize=True,
    database=None,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "nightly",
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
_default_profile = "ci" if os.environ.get("CI", "").lower() in {"1", "true", "yes"} else "dev"
settings.load_profile(os.environ.get("FLOWKIT_HYPOTHESIS_PROFILE", _default_profile))

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _float64_default() -> Iterator[None]:
    """Tests run in float64 unless they ask otherwise; restored afterwards."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)
