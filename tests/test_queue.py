"""At most ``max_jobs`` jobs run at once in one processor; the others wait, queued, in order."""

from __future__ import annotations

from typing import Any

import anyio
import attrs
import pytest

from hospital_bulk import BulkProcessor, Job, JobState, MemoryStore, Run
from hospital_bulk.testing import FakeDirectory
from tests.helpers import UNPACED, csv_bytes, records

pytestmark = pytest.mark.anyio

TWO_AT_ONCE = attrs.evolve(UNPACED, max_jobs=2)


async def test_at_most_max_jobs_run_and_the_rest_wait_queued_in_order() -> None:
    fake = FakeDirectory(latency=0.02)
    bulk = BulkProcessor(fake, settings=TWO_AT_ONCE)
    jobs = [await bulk.submit(csv_bytes(records(10, prefix=f"J{n}"))) for n in range(5)]
    most_running = 0
    seen_queued: set[str] = set()

    async with anyio.create_task_group() as group:
        runs = [await bulk.start(job.id, group) for job in jobs]
        states = [(await bulk.get_job(job.id)).state for job in jobs]
        assert [JobState.RUNNING] * 2 + [JobState.QUEUED] * 3 == states
        while not all(run.done for run in runs):
            now = [(await bulk.get_job(job.id)).state for job in jobs]
            most_running = max(
                most_running, sum(s is not JobState.QUEUED and s.is_active for s in now)
            )
            seen_queued |= {
                job.id for job, s in zip(jobs, now, strict=True) if s is JobState.QUEUED
            }
            await anyio.sleep(0.005)

    finished = [await bulk.get_job(job.id) for job in jobs]
    assert all(job.state is JobState.COMPLETED for job in finished)
    assert 2 == most_running
    assert {job.id for job in jobs[2:]} <= seen_queued
    started = [job.started_at for job in finished]
    assert sorted(started) == started  # type: ignore[type-var]  # in the order started
    assert 50 == len(fake.hospitals)


async def test_a_queued_job_cancelled_never_runs() -> None:
    fake = FakeDirectory(latency=0.05)
    bulk = BulkProcessor(fake, settings=attrs.evolve(UNPACED, max_jobs=1))
    first, second = [await bulk.submit(csv_bytes(records(5, prefix=p))) for p in "AB"]

    async with anyio.create_task_group() as group:
        await bulk.start(first.id, group)
        queued: Run = await bulk.start(second.id, group)
        await bulk.cancel(second.id)
        summary = await queued.wait()

    assert JobState.CANCELLED == summary.state
    assert 0 == (await bulk.get_job(second.id)).runs
    assert 5 == len(fake.hospitals)  # the first job's only


async def test_a_queued_job_stopped_by_shutdown_is_interrupted_and_resumable() -> None:
    fake = FakeDirectory(latency=0.05)
    bulk = BulkProcessor(fake, settings=attrs.evolve(UNPACED, max_jobs=1))
    first, second = [await bulk.submit(csv_bytes(records(5, prefix=p))) for p in "AB"]

    async with anyio.create_task_group() as group:
        await bulk.start(first.id, group)
        await bulk.start(second.id, group)
        await anyio.sleep(0.01)
        group.cancel_scope.cancel()

    assert JobState.INTERRUPTED == (await bulk.get_job(second.id)).state
    resumed = await bulk.run(second.id)
    assert JobState.COMPLETED == resumed.state


async def test_interrupting_runs_leaves_a_queued_job_interrupted_not_cancelled() -> None:
    """A shutdown (``interrupt_runs``) while a job waits its turn: it never started,
    and it stays resumable."""
    fake = FakeDirectory(latency=0.05)
    bulk = BulkProcessor(fake, settings=attrs.evolve(UNPACED, max_jobs=1))
    first, second = [await bulk.submit(csv_bytes(records(5, prefix=p))) for p in "AB"]

    async with anyio.create_task_group() as group:
        await bulk.start(first.id, group)
        await bulk.start(second.id, group)
        await bulk.interrupt_runs(grace=5)

    assert JobState.INTERRUPTED == (await bulk.get_job(second.id)).state
    assert JobState.COMPLETED == (await bulk.run(second.id)).state


async def test_a_queued_run_cancelled_from_outside_is_done() -> None:
    """Its task group torn down while it waits: whoever waits for the run hears of it."""
    fake = FakeDirectory(latency=0.2)
    bulk = BulkProcessor(fake, settings=attrs.evolve(UNPACED, max_jobs=1))
    first, second = [await bulk.submit(csv_bytes(records(5, prefix=p))) for p in "AB"]

    async with anyio.create_task_group() as group:
        await bulk.start(first.id, group)
        queued = await bulk.start(second.id, group)
        await anyio.sleep(0.05)
        group.cancel_scope.cancel()

    with anyio.fail_after(5):
        await queued.stopped()
    assert JobState.INTERRUPTED == (await bulk.get_job(second.id)).state


class SlowToQueue(MemoryStore):
    """Takes its time to record a job as queued."""

    async def transition(self, job_id: str, state: JobState, *args: Any, **kwargs: Any) -> Job:
        if state is JobState.QUEUED:
            await anyio.sleep(0.3)
        return await super().transition(job_id, state, *args, **kwargs)


async def test_a_later_start_does_not_overtake_a_job_being_queued() -> None:
    """A slot frees while job 2 is being recorded as queued: job 3, started then, waits
    behind it."""
    fake = FakeDirectory(latency=0.05)
    bulk = BulkProcessor(fake, SlowToQueue(), settings=attrs.evolve(UNPACED, max_jobs=1))
    one, two, three = [await bulk.submit(csv_bytes(records(2, prefix=p))) for p in "ABC"]

    async with anyio.create_task_group() as group:
        first = await bulk.start(one.id, group)
        group.start_soon(bulk.start, two.id, group)
        await first.stopped()
        await anyio.sleep(0.05)
        await bulk.start(three.id, group)

    started_two = (await bulk.get_job(two.id)).started_at
    started_three = (await bulk.get_job(three.id)).started_at
    assert started_two is not None
    assert started_three is not None
    assert started_two < started_three
