"""The contract every job store must honour, as a suite to run against your own store.

Subclass :class:`StoreContract` in a test module (its name must start with ``Test``)
and give it a ``store`` fixture that yields an open, empty store, fresh for each
test, and closes it afterwards::

    class TestMyStore(StoreContract):
        @pytest.fixture(name="store")
        async def fixture_store(self) -> AsyncIterator[JobStore]:
            store = await MyStore.open(...)
            try:
                yield store
            finally:
                await store.aclose()

The tests are async and run with anyio's pytest plugin (installed with anyio).
A store whose ``rate_gate()`` offers a shared gate must pass the gate tests too
(pacing by the sliding rule, remembered by the store, a 429 pausing every gate); a
store that answers ``None`` skips them.
:func:`make_job` and :func:`accepted` build what the suite
stores, for tests of your own. This module needs pytest; ``hospital_bulk.testing``
itself does not import it.
"""

# The house style is `assert expected == actual`, which ruff's SIM300 calls yoda.

from __future__ import annotations

import datetime as dt
import uuid
from typing import ClassVar

import anyio
import anyio.lowlevel
import attrs
import pytest

from hospital_bulk import (
    EventDraft,
    EventType,
    Fingerprint,
    HospitalRecord,
    Job,
    JobConflictError,
    JobNotFoundError,
    JobState,
    JobStore,
    Progress,
    RowOutcome,
    RowState,
    StoreError,
)

__all__ = ["StoreContract", "accepted", "make_job"]

# Rows per upstream batch, as the engine makes them by default.
_BATCH_SIZE = 20


def make_job(rows: int = 3, *, key: str | None = None) -> tuple[Job, list[RowOutcome]]:
    """A new pending job of ``rows`` pending rows (``file.csv``), and those rows."""
    job_id = str(uuid.uuid4())
    creation_batch_ids = _batch_ids(uuid.UUID(job_id), rows)
    now = dt.datetime.now(dt.UTC)
    job = Job(
        id=job_id,
        state=JobState.PENDING,
        total_rows=rows,
        creation_batch_ids=creation_batch_ids,
        created_at=now,
        updated_at=now,
        progress=Progress(total=rows),
        file_name="file.csv",
        idempotency_key=key,
    )
    outcomes = [
        RowOutcome(
            row=number,
            line=number + 1,
            record=HospitalRecord(f"Hospital {number}", f"{number} Main St", None),
            creation_batch_id=creation_batch_ids[(number - 1) // _BATCH_SIZE],
        )
        for number in range(1, rows + 1)
    ]
    return job, outcomes


def accepted(total: int = 3) -> EventDraft:
    """The event a job is added with."""
    return EventDraft(type=EventType.JOB_ACCEPTED, progress=Progress(total=total))


def _batch_ids(job_id: uuid.UUID, rows: int) -> tuple[uuid.UUID, ...]:
    # Derived as the engine derives them (its own id when one batch is enough), so that
    # stored jobs look like real ones; the engine's helper is private.
    count = max(1, -(-rows // _BATCH_SIZE))
    if count == 1:
        return (job_id,)
    return tuple(uuid.uuid5(job_id, f"batch-{index}") for index in range(count))


class StoreContract:
    """What every :class:`~hospital_bulk.JobStore` must do; subclass it to run it.

    The subclass provides the ``store`` fixture (see the module's docstring).
    """

    pytestmark: ClassVar[list[pytest.MarkDecorator]] = [pytest.mark.anyio]

    async def test_add_and_get_job(self, store: JobStore) -> None:
        """A job added comes back equal, with its first event numbered 1."""
        job, rows = make_job()

        event = await store.add_job(job, rows, accepted())

        stored = await store.get_job(job.id)
        assert 1 == event.seq
        assert EventType.JOB_ACCEPTED == event.type
        assert attrs.evolve(job, last_seq=1, updated_at=stored.updated_at) == stored
        assert rows == await store.get_rows(job.id)

    async def test_add_twice_is_an_error(self, store: JobStore) -> None:
        """A job id is never reused."""
        job, rows = make_job()
        await store.add_job(job, rows, accepted())

        with pytest.raises(StoreError):
            await store.add_job(job, rows, accepted())

    async def test_unknown_job(self, store: JobStore) -> None:
        """Every read of an unknown id raises JobNotFoundError."""
        with pytest.raises(JobNotFoundError):
            await store.get_job("nope")
        with pytest.raises(JobNotFoundError):
            await store.get_rows("nope")
        with pytest.raises(JobNotFoundError):
            await store.read_events("nope")

    async def test_rows_round_trip_with_every_field(self, store: JobStore) -> None:
        """Saved rows come back equal, including ids, errors and attempts."""
        job, rows = make_job(2)
        await store.add_job(job, rows, accepted(2))
        changed = [
            attrs.evolve(rows[0], state=RowState.CREATED, hospital_id=7, attempts=2),
            attrs.evolve(
                rows[1],
                state=RowState.FAILED,
                attempts=1,
                error_code="rejected",
                error="Batch cannot exceed 20 hospitals",
            ),
        ]

        await store.save(job.id, changed, [])

        assert changed == await store.get_rows(job.id)

    async def test_save_numbers_events_without_gaps(self, store: JobStore) -> None:
        """Events saved in several calls are numbered 1, 2, 3... and the job keeps the last."""
        job, rows = make_job()
        await store.add_job(job, rows, accepted())
        progress = Progress(total=3, created=1)
        created = EventDraft(type=EventType.ROW_CREATED, progress=progress, row=1, hospital_id=9)

        first = await store.save(job.id, [attrs.evolve(rows[0], state=RowState.CREATED)], [created])
        second = await store.save(job.id, [], [created, created])

        assert [2] == [event.seq for event in first]
        assert [3, 4] == [event.seq for event in second]
        stored = await store.get_job(job.id)
        assert 4 == stored.last_seq
        assert progress == stored.progress
        events = await store.read_events(job.id)
        assert [1, 2, 3, 4] == [event.seq for event in events]
        assert 9 == events[1].hospital_id

    async def test_read_events_after(self, store: JobStore) -> None:
        """read_events returns only events after the given sequence number."""
        job, rows = make_job()
        await store.add_job(job, rows, accepted())
        await store.save(job.id, [], [accepted(), accepted()])

        assert [3] == [event.seq for event in await store.read_events(job.id, 2)]
        assert [] == await store.read_events(job.id, 3)

    async def test_read_events_waits_for_new_ones(self, store: JobStore) -> None:
        """A read with a wait returns as soon as a new event is saved."""
        job, rows = make_job()
        await store.add_job(job, rows, accepted())
        seen: list[int] = []

        async def reader() -> None:
            seen.extend(event.seq for event in await store.read_events(job.id, 1, wait=5.0))

        with anyio.fail_after(4):
            async with anyio.create_task_group() as group:
                group.start_soon(reader)
                await anyio.sleep(0.05)
                await store.save(job.id, [], [accepted()])

        assert [2] == seen

    async def test_read_events_wait_times_out_empty(self, store: JobStore) -> None:
        """A read with a wait and nothing new returns an empty list."""
        job, rows = make_job()
        await store.add_job(job, rows, accepted())

        assert [] == await store.read_events(job.id, 1, wait=0.05)

    async def test_transition_follows_the_table(self, store: JobStore) -> None:
        """Allowed moves succeed and record bookkeeping; others raise JobConflictError."""
        job, rows = make_job()
        await store.add_job(job, rows, accepted())

        running = await store.transition(job.id, JobState.RUNNING)

        assert JobState.RUNNING == running.state
        assert 1 == running.runs
        assert running.started_at is not None
        assert 2 == running.last_seq
        with pytest.raises(JobConflictError):
            await store.transition(job.id, JobState.RUNNING)
        with pytest.raises(JobConflictError):
            await store.transition(job.id, JobState.DELETED)
        done = await store.transition(job.id, JobState.COMPLETED)
        assert done.finished_at is not None
        assert 3 == len(await store.read_events(job.id))

    async def test_transition_allowed_narrows(self, store: JobStore) -> None:
        """``allowed`` restricts the source states further (run only from pending)."""
        job, rows = make_job()
        await store.add_job(job, rows, accepted())
        await store.transition(job.id, JobState.RUNNING)
        await store.transition(job.id, JobState.FAILED)

        with pytest.raises(JobConflictError):
            await store.transition(
                job.id,
                JobState.RUNNING,
                allowed=frozenset({JobState.PENDING}),
            )
        assert JobState.FAILED == (await store.get_job(job.id)).state

    async def test_racing_transitions_only_one_wins(self, store: JobStore) -> None:
        """Of many concurrent pending -> running moves exactly one succeeds."""
        job, rows = make_job()
        await store.add_job(job, rows, accepted())
        wins: list[bool] = []

        async def start() -> None:
            try:
                await store.transition(job.id, JobState.RUNNING)
            except JobConflictError:
                wins.append(False)
            else:
                wins.append(True)

        async with anyio.create_task_group() as group:
            for _ in range(10):
                group.start_soon(start)

        assert [True] == [win for win in wins if win]
        assert 10 == len(wins)

    async def test_list_jobs_newest_first_paginated(self, store: JobStore) -> None:
        """list_jobs returns the newest job first and honours limit and offset."""
        ids = []
        for _ in range(5):
            job, rows = make_job(1)
            await store.add_job(job, rows, accepted(1))
            ids.append(job.id)
            await anyio.sleep(0.002)

        assert list(reversed(ids)) == [job.id for job in await store.list_jobs()]
        assert list(reversed(ids))[1:3] == [
            job.id for job in await store.list_jobs(limit=2, offset=1)
        ]

    async def test_find_job_by_idempotency_key(self, store: JobStore) -> None:
        """A job is found by the idempotency key it was submitted with."""
        key = str(uuid.uuid4())
        job, rows = make_job(key=key)
        await store.add_job(job, rows, accepted())

        found = await store.find_job(key)

        assert found is not None
        assert job.id == found.id
        assert await store.find_job("other") is None

    async def test_a_fingerprint_comes_back_equal(self, store: JobStore) -> None:
        """What a job was submitted from is kept with it, and found with its key."""
        key = str(uuid.uuid4())
        job, rows = make_job(key=key)
        fingerprint = Fingerprint(sha256="ab" * 32, encoding="cp1252", delimiter=";")
        await store.add_job(attrs.evolve(job, fingerprint=fingerprint), rows, accepted())

        found = await store.find_job(key)
        moved = await store.transition(job.id, JobState.CANCELLED)

        assert [fingerprint] * 3 == [
            (await store.get_job(job.id)).fingerprint,
            None if found is None else found.fingerprint,
            moved.fingerprint,
        ]

    async def test_ping(self, store: JobStore) -> None:
        """A working store answers a ping."""
        await store.ping()

    async def test_lease_is_taken_renewed_and_dropped(self, store: JobStore) -> None:
        """Moving into running takes the owner's lease; only that owner renews or moves it;
        leaving the active states drops it."""
        job, rows = make_job()
        await store.add_job(job, rows, accepted())

        running = await store.transition(job.id, JobState.RUNNING, owner="a", lease=30)

        assert "a" == running.owner
        assert running.lease_expires is not None
        assert [job.id] == [active.id for active in await store.active_jobs()]
        assert await store.renew_lease(job.id, "a", 60)
        assert not await store.renew_lease(job.id, "b", 60)
        renewed = await store.get_job(job.id)
        assert renewed.lease_expires is not None
        assert renewed.lease_expires > running.lease_expires
        with pytest.raises(JobConflictError):
            await store.transition(job.id, JobState.FAILED, owner="b")
        done = await store.transition(job.id, JobState.COMPLETED, owner="a")
        assert (None, None) == (done.owner, done.lease_expires)
        assert [] == await store.active_jobs()
        assert not await store.renew_lease(job.id, "a", 60)

    async def test_idempotency_keys_are_unique(self, store: JobStore) -> None:
        """A second job with a key already used is refused: racing uploads make one job."""
        first, rows = make_job(key="upload-7")
        second, _ = make_job(key="upload-7")
        await store.add_job(first, rows, accepted())

        with pytest.raises(StoreError):
            await store.add_job(second, rows, accepted())

        found = await store.find_job("upload-7")
        assert found is not None
        assert first.id == found.id

    async def test_a_final_state_and_its_job_finished_are_one_write(self, store: JobStore) -> None:
        """``transition(..., then=...)`` appends the state change and the events after
        it in one write: a reader polling all along never sees the final state without
        its ``job.finished``, and the job's progress is the last event's."""
        job, rows = make_job()
        await store.add_job(job, rows, accepted())
        await store.transition(job.id, JobState.RUNNING)
        final = Progress(total=3, created=3, activated=3)
        finished = EventDraft(type=EventType.JOB_FINISHED, progress=final, state=JobState.COMPLETED)
        seen_apart = []

        async def poll() -> None:
            while True:
                events = await store.read_events(job.id)
                types = [event.type for event in events]
                if EventType.JOB_FINISHED in types:
                    return
                if any(event.state is JobState.COMPLETED for event in events):
                    seen_apart.append(types)
                await anyio.lowlevel.checkpoint()

        async with anyio.create_task_group() as group:
            group.start_soon(poll)
            await anyio.sleep(0.01)
            done = await store.transition(job.id, JobState.COMPLETED, final, then=[finished])

        events = await store.read_events(job.id)
        stored = await store.get_job(job.id)
        assert [] == seen_apart
        assert [
            (3, EventType.JOB_STATE_CHANGED, JobState.COMPLETED),
            (4, EventType.JOB_FINISHED, JobState.COMPLETED),
        ] == [(event.seq, event.type, event.state) for event in events[-2:]]
        assert (4, final) == (done.last_seq, done.progress)
        assert (4, final) == (stored.last_seq, stored.progress)
