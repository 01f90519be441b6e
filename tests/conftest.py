"""Shared test configuration: the anyio backend and Hypothesis profiles."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

# "ci" keeps the suite quick; HYPOTHESIS_PROFILE=thorough explores far more inputs.
settings.register_profile(
    "ci", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "thorough", max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(name="anyio_backend", scope="session")
def fixture_anyio_backend() -> str:
    """Every async test runs on asyncio, the loop the adapters use."""
    return "asyncio"
