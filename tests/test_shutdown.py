"""Stopping for a shutdown and starting again: ``interrupt_runs`` and ``adopt_orphans``."""

from __future__ import annotations

import collections

import anyio
import attrs
import pytest

from hospital_bulk import BulkProcessor, EventType, JobState, MemoryStore, RowState
from hospital_bulk.testing import FakeDirectory

from .helpers import UNPACED, csv_bytes, records, upstream_copies
from .test_processor import until_created

pytestmark = pytest.mark.anyio


async def test_interrupt_runs_lets_creates_in_flight_finish_and_leaves_the_job_resumable() -> None:
    """Stopped for a shutdown with a long enough grace, a run sends nothing new, the
    creates in flight finish, and the job ends ``interrupted`` without ``job.finished``
    and without a row left in doubt; a later run completes it, each row upstream once."""
    slow = FakeDirectory(latency=0.2)
    bulk = BulkProcessor(slow, settings=attrs.evolve(UNPACED, concurrency=5))
    job = await bulk.submit(csv_bytes(records(40)))

    async with anyio.create_task_group() as group:
        run = await bulk.start(job.id, group)
        await until_created(bulk, job.id, 5)
        stopped = await bulk.interrupt_runs(grace=10)

    snapshot = await bulk.get(job.id)
    events = [event async for event in bulk.watch(job.id)]
    assert [run] == stopped
    assert JobState.INTERRUPTED == snapshot.job.state
    assert 5 <= snapshot.job.progress.created < 40
    assert not [row for row in snapshot.rows if row.state is RowState.UNKNOWN]
    assert not [r for r in snapshot.rows if r.state is RowState.PENDING and r.may_have_landed]
    assert EventType.JOB_FINISHED not in {event.type for event in events}
    assert len(slow.hospitals) == snapshot.job.progress.created

    summary = await bulk.run(job.id)
    assert JobState.COMPLETED == summary.state
    final = await bulk.get(job.id)
    assert dict.fromkeys(upstream_copies(slow, final), 1) == dict(upstream_copies(slow, final))
    assert 40 == len(slow.hospitals)


async def test_interrupt_runs_stops_at_once_after_the_grace() -> None:
    """Creates still unanswered when the grace is over are cut short and marked
    ``unknown``: the job is ``interrupted``, and a resume finds what landed."""
    slow = FakeDirectory(latency=1.0)
    bulk = BulkProcessor(slow, settings=attrs.evolve(UNPACED, concurrency=5))
    job = await bulk.submit(csv_bytes(records(10)))

    async with anyio.create_task_group() as group:
        await bulk.start(job.id, group)
        await until_created(bulk, job.id, 0)
        await anyio.sleep(0.1)  # creates in flight
        with anyio.fail_after(5):
            await bulk.interrupt_runs(grace=0.05)

    snapshot = await bulk.get(job.id)
    assert JobState.INTERRUPTED == snapshot.job.state
    assert 0 < snapshot.job.progress.unknown
    assert JobState.COMPLETED == (await bulk.run(job.id)).state


async def test_interrupt_runs_with_nothing_running_returns_at_once() -> None:
    """A processor without runs has nothing to stop."""
    bulk = BulkProcessor(FakeDirectory(), settings=UNPACED)

    with anyio.fail_after(1):
        assert [] == await bulk.interrupt_runs(grace=30)


async def test_adopt_orphans_starts_interrupted_and_stale_pending_jobs_only() -> None:
    """A job left ``interrupted`` and one left ``pending`` for longer than a lease are
    started; a job pending for less, a finished one and a cancelled one are not."""
    fake = FakeDirectory(latency=0.001)
    store = MemoryStore()
    bulk = BulkProcessor(fake, store, attrs.evolve(UNPACED, lease_ttl=0.2))
    stale = await bulk.submit(csv_bytes(records(3, prefix="Stale")))
    stopped = await bulk.submit(csv_bytes(records(3, prefix="Stopped")))
    await store.transition(stopped.id, JobState.RUNNING, owner="gone:1:x", lease=60)
    await store.transition(stopped.id, JobState.INTERRUPTED, owner="gone:1:x")
    done = await bulk.submit(csv_bytes(records(2, prefix="Done")))
    await bulk.run(done.id)
    cancelled = await bulk.submit(csv_bytes(records(2, prefix="Cancelled")))
    await bulk.cancel(cancelled.id)
    await anyio.sleep(0.3)
    fresh = await bulk.submit(csv_bytes(records(2, prefix="Fresh")))

    async with anyio.create_task_group() as group:
        runs = await bulk.adopt_orphans(group)
    states = {job.id: job.state for job in await bulk.list_jobs()}

    assert {stale.id, stopped.id} == {run.job_id for run in runs}
    assert JobState.COMPLETED == states[stale.id] == states[stopped.id]
    assert (JobState.PENDING, JobState.CANCELLED) == (states[fresh.id], states[cancelled.id])
    assert [1] * 8 == list(collections.Counter(h.record().key() for h in fake.hospitals).values())


async def test_adopt_orphans_passes_by_a_job_started_elsewhere_first() -> None:
    """Of two processes adopting the same orphan, one runs it; the other starts nothing."""
    fake = FakeDirectory(latency=0.05)
    store = MemoryStore()
    first = BulkProcessor(fake, store, attrs.evolve(UNPACED, lease_ttl=0.05))
    second = BulkProcessor(fake, store, attrs.evolve(UNPACED, lease_ttl=0.05))
    job = await first.submit(csv_bytes(records(3)))
    await anyio.sleep(0.1)

    async with anyio.create_task_group() as group:
        adopted = [*await first.adopt_orphans(group), *await second.adopt_orphans(group)]

    assert [job.id] == [run.job_id for run in adopted]
    assert JobState.COMPLETED == (await first.get_job(job.id)).state
    assert 3 == len(fake.hospitals)
