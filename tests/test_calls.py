"""UpstreamCalls' retries: the backoff we compute is the wait stamina applies."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import stamina.instrumentation

from hospital_bulk import BulkProcessor, JobState, ProcessorSettings, RetryPolicy
from hospital_bulk.testing import FakeDirectory, Fault
from tests.helpers import csv_bytes, records

pytestmark = pytest.mark.anyio


@pytest.fixture(name="retries")
def fixture_retries() -> Iterator[list[stamina.instrumentation.RetryDetails]]:
    """Every retry stamina schedules, as its hooks hear it."""
    heard: list[stamina.instrumentation.RetryDetails] = []
    before = stamina.instrumentation.get_on_retry_hooks()
    stamina.instrumentation.set_on_retry_hooks([heard.append])
    yield heard
    stamina.instrumentation.set_on_retry_hooks(before)


async def test_retries_wait_the_backoff_we_compute(
    retries: list[stamina.instrumentation.RetryDetails],
) -> None:
    """Full jitter capped at ``backoff_max``: stamina must wait what our hook returns
    (stamina 25.2 and later), not backoff of its own (which waited up to a second)."""
    fake = FakeDirectory()
    fake.inject(Fault.NOT_SENT, times=3)
    policy = RetryPolicy(backoff_initial=0.001, backoff_max=0.004, outage_after=100)
    settings = ProcessorSettings(create_limit=None, other_limit=None, retry=policy)
    bulk = BulkProcessor(fake, settings=settings)
    job = await bulk.submit(csv_bytes(records(1)))

    summary = await bulk.run(job.id)

    assert JobState.COMPLETED == summary.state
    assert 2 == len(retries)  # the first retry is sent before stamina is involved
    assert all(0 <= retry.wait_for <= 0.004 for retry in retries)
