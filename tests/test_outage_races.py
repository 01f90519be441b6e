"""Outages under stress: a prober that leaves, a stop while the directory is away, a
directory that answers pings but refuses creates. Found in review; each test failed
before its fix."""

from __future__ import annotations

from uuid import UUID

import anyio
import attrs
import pytest

from hospital_bulk import (
    BulkProcessor,
    Hospital,
    HospitalRecord,
    JobState,
    NotSentError,
    ProcessorSettings,
)
from hospital_bulk.testing import FakeDirectory
from tests.helpers import UNPACED, csv_bytes, records

pytestmark = pytest.mark.anyio


class Refusing(FakeDirectory):
    """Refuses every connection while ``down``."""

    down = True

    async def create_hospital(self, record: HospitalRecord, batch_id: UUID) -> Hospital:
        if self.down:
            raise NotSentError("connection refused")
        return await super().create_hospital(record, batch_id)

    async def ping(self) -> None:
        if self.down:
            raise NotSentError("connection refused")
        await super().ping()


def settings(deadline: float, **retry: float) -> ProcessorSettings:
    policy = attrs.evolve(
        UNPACED.retry,
        **{"backoff_initial": 0.3, "probe_max": 0.3, "outage_deadline": deadline, **retry},
    )
    return attrs.evolve(UNPACED, concurrency=4, retry=policy)


async def wait_for(condition: object) -> None:
    with anyio.fail_after(10):
        while not condition():  # type: ignore[operator]  # noqa: ASYNC110 (no event to wait on)
            await anyio.sleep(0.01)


async def test_when_the_probing_job_stops_another_waiter_probes() -> None:
    """Job A's call probes; A is cancelled; the directory comes back. Job B's calls take
    over the probing and B completes (it used to wait out its deadline: interrupted)."""
    fake = Refusing(latency=0.01)
    bulk = BulkProcessor(fake, settings=settings(deadline=30))
    a, b = [await bulk.submit(csv_bytes(records(4, prefix=p))) for p in "AB"]
    async with anyio.create_task_group() as group:
        run_a = await bulk.start(a.id, group)
        await wait_for(lambda: bulk.calls.outage.probing.locked())
        run_b = await bulk.start(b.id, group)
        await anyio.sleep(0.2)
        run_a.cancel()
        await run_a.stopped()
        fake.down = False
        summary_b = await run_b.wait()

    assert JobState.COMPLETED == summary_b.state


async def test_a_prober_past_its_deadline_hands_over_to_a_later_job() -> None:
    """A's calls reach their deadline (A is interrupted) while B's still have time; the
    directory returns just after: B's calls probe and B completes."""
    fake = Refusing(latency=0.01)
    bulk = BulkProcessor(fake, settings=settings(deadline=2))
    a, b = [await bulk.submit(csv_bytes(records(4, prefix=p))) for p in "AB"]
    async with anyio.create_task_group() as group:
        run_a = await bulk.start(a.id, group)
        await anyio.sleep(1.0)
        run_b = await bulk.start(b.id, group)
        assert JobState.INTERRUPTED == (await run_a.wait()).state
        fake.down = False
        summary_b = await run_b.wait()

    assert JobState.COMPLETED == summary_b.state


class NoActivation(FakeDirectory):
    async def activate_batch(self, batch_id: UUID) -> int:
        raise NotSentError("connection refused")

    async def ping(self) -> None:
        raise NotSentError("connection refused")


async def test_a_stop_is_heard_by_an_activation_waiting_for_the_directory() -> None:
    """Interrupted while its activation waits out an outage: the run ends at once,
    interrupted (it used to wait for the outage's deadline, here an hour)."""
    bulk = BulkProcessor(NoActivation(latency=0.01), settings=settings(deadline=3600))
    job = await bulk.submit(csv_bytes(records(3)))
    async with anyio.create_task_group() as group:
        run = await bulk.start(job.id, group)
        await wait_for(lambda: bulk.calls.outage.active)
        run.interrupt()
        with anyio.fail_after(10):
            await run.stopped()

    assert JobState.INTERRUPTED == (await bulk.get_job(job.id)).state


class CreatesRefused(FakeDirectory):
    """Answers pings, refuses every create: not an outage a wait can cure."""

    sent = 0

    async def create_hospital(self, record: HospitalRecord, batch_id: UUID) -> Hospital:
        self.sent += 1
        raise NotSentError("connection refused")


async def test_a_directory_refusing_only_creates_is_not_hammered() -> None:
    """Each call is resent for free at most ``attempts`` times: 20 rows of 6 attempts
    send a bounded number of creates (899 before), and the rows fail, resumable."""
    fake = CreatesRefused()
    retry = {"backoff_initial": 0.001, "probe_max": 0.002}
    bulk = BulkProcessor(fake, settings=attrs.evolve(settings(5, **retry), concurrency=20))
    job = await bulk.submit(csv_bytes(records(20)))

    summary = await bulk.run(job.id)

    assert JobState.FAILED == summary.state
    assert fake.sent <= 20 * 6 * 2
