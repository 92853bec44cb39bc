"""Test configuration: hypothesis profiles and shared fixtures.

Profiles (chosen with ``FLOWKIT_HYPOTHESIS_PROFILE``; default ``ci`` when the
``CI`` environment variable is set, else ``dev``):
``dev`` quick and random; ``ci`` deterministic (derandomised, no database, no
deadline); ``nightly`` many more examples.

Registry: tests resolve names in :func:`registry_helpers.suite_registry`
(built-ins, no entry-point autoload), given as the ``registry`` fixture and
installed as the global registry for each test, so that installed plugins do
not change the suite. Tests about discovery build their own.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import torch
from hypothesis import HealthCheck, settings
from registry_helpers import suite_registry

from flowkit.registry import Registry, reset_registry

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


@pytest.fixture(scope="session")
def registry() -> Registry:
    """The suite's registry: the built-in components, no entry-point autoload."""
    return suite_registry()


@pytest.fixture(autouse=True)
def _suite_global_registry() -> Iterator[None]:
    """The suite's registry stands in for the global one during each test."""
    reset_registry(suite_registry())
    yield
    reset_registry(suite_registry())
