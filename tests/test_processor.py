"""BulkProcessor against the in-memory FakeDirectory: the named scenarios."""

from __future__ import annotations

import collections
import hashlib
import io
import socket
import uuid
from pathlib import Path
from typing import Any

import anyio
import attrs
import pytest
from anyio.abc import TaskGroup

from hospital_bulk import (
    BulkProcessor,
    EventDraft,
    EventType,
    Fingerprint,
    Hospital,
    HospitalRecord,
    IdempotencyKeyReusedError,
    InvalidCsvError,
    JobConflictError,
    JobNotFoundError,
    JobState,
    MaybeLandedError,
    MemoryStore,
    ProcessorSettings,
    RateLimit,
    RowState,
    StoreError,
)
from hospital_bulk.testing import FakeDirectory, Fault

from .helpers import UNPACED, csv_bytes, processor, records, upstream_copies

pytestmark = pytest.mark.anyio


async def until_created(bulk: BulkProcessor, job_id: str, created: int) -> None:
    """Wait (as a watcher would) until the job runs with at least ``created`` rows created."""
    async for event in bulk.watch(job_id):
        running = event.state is JobState.RUNNING or event.type is EventType.ROW_CREATED
        if running and event.progress.created >= created:
            return


@pytest.fixture(name="fake")
def fixture_fake() -> FakeDirectory:
    """A fresh in-memory directory with a little latency, like a real one."""
    return FakeDirectory(latency=0.001)


async def test_small_file_is_created_and_activated(fake: FakeDirectory) -> None:
    """A 3-row file ends completed: one batch (the job id), every row active upstream."""
    bulk = processor(fake)
    job = await bulk.submit(csv_bytes(records(3)), file_name="three.csv")

    summary = await bulk.run(job.id)

    assert JobState.COMPLETED == summary.state
    assert (3, 3, 0, True) == (
        summary.total_hospitals,
        summary.processed_hospitals,
        summary.failed_hospitals,
        summary.batch_activated,
    )
    assert ["created_and_activated"] * 3 == [row.status for row in summary.hospitals]
    assert (str(job.creation_batch_ids[0]),) == (job.id,)
    upstream = fake.batch(job.creation_batch_ids[0])
    assert {row.hospital_id for row in summary.hospitals} == {h.id for h in upstream}
    assert all(h.active for h in upstream)


async def test_45_rows_make_three_batches_all_activated(fake: FakeDirectory) -> None:
    """A 45-row job is cut into upstream batches of 20, 20 and 5, each activated."""
    bulk = processor(fake)
    job = await bulk.submit(csv_bytes(records(45)))

    summary = await bulk.run(job.id)

    assert JobState.COMPLETED == summary.state
    assert 3 == len(set(job.creation_batch_ids))
    assert [20, 20, 5] == [len(fake.batch(batch_id)) for batch_id in job.creation_batch_ids]
    assert all(h.active for batch_id in job.creation_batch_ids for h in fake.batch(batch_id))


async def test_lost_response_on_row_3_makes_exactly_one_hospital(fake: FakeDirectory) -> None:
    """Row 3's create is stored but its response lost: reconciliation finds it, no resend."""
    rows = records(5)
    fake.inject(Fault.FAIL_AFTER_STORING, operation="create", name=rows[2].name)
    bulk = processor(fake)
    job = await bulk.submit(csv_bytes(rows))

    summary = await bulk.run(job.id)

    snapshot = await bulk.get(job.id)
    assert JobState.COMPLETED == summary.state
    assert 1 == upstream_copies(fake, snapshot)[rows[2].key()]
    assert all(count == 1 for count in upstream_copies(fake, snapshot).values())
    events = [event.type for event in await bulk.store.read_events(job.id)]
    assert EventType.ROW_UNKNOWN in events


async def test_failure_before_storing_is_resent_once(fake: FakeDirectory) -> None:
    """A 500 that stored nothing is reconciled (not found) and sent again: one hospital."""
    rows = records(4)
    fake.inject(Fault.FAIL_BEFORE_STORING, operation="create", name=rows[1].name, times=2)
    bulk = processor(fake)
    job = await bulk.submit(csv_bytes(rows))

    summary = await bulk.run(job.id)

    assert JobState.COMPLETED == summary.state
    assert collections.Counter({r.key(): 1 for r in rows}) == upstream_copies(
        fake, await bulk.get(job.id)
    )


async def test_not_sent_and_throttled_are_retried(fake: FakeDirectory) -> None:
    """Connect errors and 429s are retried; nothing is created twice."""
    rows = records(6)
    fake.inject(Fault.NOT_SENT, operation="create", times=3)
    fake.inject(Fault.THROTTLE, operation="create", times=2)
    fake.inject(Fault.THROTTLE, operation="activate", times=1)
    bulk = processor(fake)
    job = await bulk.submit(csv_bytes(rows))

    summary = await bulk.run(job.id)

    assert JobState.COMPLETED == summary.state
    assert 6 == len(fake.batch(job.creation_batch_ids[0]))
    types = [event.type for event in await bulk.store.read_events(job.id)]
    assert EventType.THROTTLE_CHANGED in types


async def test_rejected_row_fails_with_reason_and_batch_stays_inactive(
    fake: FakeDirectory,
) -> None:
    """A rejected row fails with the upstream's reason; its batch is never activated."""
    rows = records(3)
    fake.inject(Fault.REJECT, operation="create", name=rows[0].name)
    bulk = processor(fake)
    job = await bulk.submit(csv_bytes(rows))

    summary = await bulk.run(job.id)

    assert JobState.COMPLETED_WITH_ERRORS == summary.state
    assert ["failed", "created", "created"] == [row.status for row in summary.hospitals]
    assert summary.hospitals[0].error
    assert "rejected" == summary.hospitals[0].error_code
    assert not any(h.active for h in fake.batch(job.creation_batch_ids[0]))
    assert (2, 1, False) == (
        summary.processed_hospitals,
        summary.failed_hospitals,
        summary.batch_activated,
    )


async def test_resume_finishes_what_failed(fake: FakeDirectory) -> None:
    """After a rejection, resume sends only the failed row, then activates the batch."""
    rows = records(3)
    fake.inject(Fault.REJECT, operation="create", name=rows[0].name)
    bulk = processor(fake)
    job = await bulk.submit(csv_bytes(rows))
    await bulk.run(job.id)
    creates_before = fake.stats.calls["create"]

    summary = await bulk.run(job.id)

    assert JobState.COMPLETED == summary.state
    assert 1 == fake.stats.calls["create"] - creates_before
    assert 3 == len(fake.batch(job.creation_batch_ids[0]))
    assert all(h.active for h in fake.batch(job.creation_batch_ids[0]))


async def test_lost_activation_response_is_confirmed_by_listing(fake: FakeDirectory) -> None:
    """An activation whose response is lost is confirmed by listing, not repeated."""
    fake.inject(Fault.FAIL_AFTER_STORING, operation="activate")
    bulk = processor(fake)
    job = await bulk.submit(csv_bytes(records(2)))

    summary = await bulk.run(job.id)

    assert JobState.COMPLETED == summary.state
    assert 1 == fake.stats.calls["activate"]


async def test_two_jobs_back_to_back_see_no_429(fake: FakeDirectory) -> None:
    """Two 20-row jobs against a directory allowing 30 creates per (scaled) minute: the
    shared pacing keeps both under the limit, so the directory never answers 429."""
    limit = RateLimit(30, 0.6)
    paced = FakeDirectory(latency=0.01, create_limit=limit)
    settings = attrs.evolve(UNPACED, create_limit=limit)
    bulk = BulkProcessor(paced, settings=settings)
    first = await bulk.submit(csv_bytes(records(20, prefix="First")))
    second = await bulk.submit(csv_bytes(records(20, prefix="Second")))
    summaries = []

    async def run(job_id: str) -> None:
        summaries.append(await bulk.run(job_id))

    async with anyio.create_task_group() as group:
        group.start_soon(run, first.id)
        group.start_soon(run, second.id)

    assert [JobState.COMPLETED, JobState.COMPLETED] == [s.state for s in summaries]
    assert 0 == paced.stats.throttled
    assert 40 == len(paced.hospitals)


async def test_invalid_file_creates_nothing(fake: FakeDirectory) -> None:
    """An invalid file raises InvalidCsvError with the report; no job, no call upstream."""
    bulk = processor(fake)

    with pytest.raises(InvalidCsvError) as raised:
        await bulk.submit(b"name,address\nOnly a name,\n")

    assert not raised.value.report.valid
    assert [] == await bulk.list_jobs()
    assert 0 == fake.stats.calls["create"]


async def test_idempotency_key_returns_the_first_job(fake: FakeDirectory) -> None:
    """Submitting again with the same idempotency key returns the first job."""
    bulk = processor(fake)
    first = await bulk.submit(csv_bytes(records(2)), idempotency_key="upload-1")

    again = await bulk.submit(csv_bytes(records(2)), idempotency_key="upload-1")

    assert first.id == again.id
    assert 1 == len(await bulk.list_jobs())


async def test_a_job_keeps_the_fingerprint_of_its_file(fake: FakeDirectory) -> None:
    """The SHA-256 of the bytes submitted and the reading options, as Python names them."""
    data = csv_bytes(records(2)).replace(b",", b";")
    job = await processor(fake).submit(data, encoding="latin-1", delimiter=";")

    assert Fingerprint(hashlib.sha256(data).hexdigest(), "iso8859-1", ";") == job.fingerprint


async def test_an_idempotency_key_with_another_file_is_refused(fake: FakeDirectory) -> None:
    """The same key with a different file raises IdempotencyKeyReusedError naming the key
    and the first job; nothing new is stored, and the first file still gets its job."""
    bulk = processor(fake)
    first = await bulk.submit(csv_bytes(records(2)), idempotency_key="upload-1")

    with pytest.raises(IdempotencyKeyReusedError) as raised:
        await bulk.submit(csv_bytes(records(3)), idempotency_key="upload-1")

    error = raised.value
    assert ("upload-1", first.id, ("a different file",)) == (
        error.key,
        error.job_id,
        error.differences,
    )
    assert "'upload-1'" in str(error)
    assert first.id in str(error)
    assert [first.id] == [job.id for job in await bulk.list_jobs()]
    assert first.id == (await bulk.submit(csv_bytes(records(2)), idempotency_key="upload-1")).id


async def test_an_idempotency_key_with_other_options_is_refused(fake: FakeDirectory) -> None:
    """The same bytes read another way are another submission: the differences say how."""
    bulk = processor(fake)
    data = csv_bytes(records(2))
    await bulk.submit(data, idempotency_key="k")

    with pytest.raises(IdempotencyKeyReusedError) as raised:
        await bulk.submit(data, idempotency_key="k", encoding="cp1252", delimiter=",")

    assert (
        "encoding 'cp1252' instead of 'utf-8'",
        "delimiter ',' instead of picked from the file",
    ) == raised.value.differences


async def test_a_retry_with_the_same_file_from_a_file_object_gets_the_job(
    fake: FakeDirectory, tmp_path: Path
) -> None:
    """A path, bytes and a file object of the same content are the same submission."""
    bulk = processor(fake)
    data = csv_bytes(records(2))
    path = tmp_path / "h.csv"
    path.write_bytes(data)
    first = await bulk.submit(path, idempotency_key="k")

    again = [
        await bulk.submit(source, idempotency_key="k", file_name="other.csv")
        for source in (data, io.BytesIO(data), path)
    ]

    assert [first.id] * 3 == [job.id for job in again]


async def test_a_job_stored_without_a_fingerprint_matches_any_file(fake: FakeDirectory) -> None:
    """Jobs from before fingerprints cannot be compared: their key returns them, as before."""
    store = MemoryStore()
    bulk = BulkProcessor(fake, store, settings=UNPACED)
    first = await bulk.submit(csv_bytes(records(2)), idempotency_key="old")
    store._jobs[first.id] = attrs.evolve(store._jobs[first.id], fingerprint=None)

    again = await bulk.submit(csv_bytes(records(5)), idempotency_key="old")

    assert first.id == again.id


async def test_racing_submissions_of_different_files_with_one_key(fake: FakeDirectory) -> None:
    """When two submissions with one key race, the loser learns whether it was a retry."""
    store = MemoryStore()
    bulk = BulkProcessor(fake, store, settings=UNPACED)
    find_job = store.find_job
    winner: list[str] = []

    async def find_nothing_first(key: str) -> Any:
        # The loser looked before the winner stored its job.
        store.find_job = find_job  # type: ignore[method-assign]  # once only
        winner.append((await bulk.submit(csv_bytes(records(1)), idempotency_key=key)).id)
        return None

    store.find_job = find_nothing_first  # type: ignore[method-assign]  # a race, staged
    with pytest.raises(IdempotencyKeyReusedError) as raised:
        await bulk.submit(csv_bytes(records(2)), idempotency_key="k")

    assert winner == [raised.value.job_id]


async def test_encoding_and_delimiter_reach_the_reader(fake: FakeDirectory) -> None:
    """validate and submit read with the options given; bad ones are a ValueError."""
    bulk = processor(fake)
    data = "name;address\nHôpital Nord;1 rue\n".encode("cp1252")

    refused = await bulk.validate(data)
    report = await bulk.validate(data, encoding="cp1252", delimiter=";")
    job = await bulk.submit(data, encoding="cp1252", delimiter=";")

    assert (False, True) == (refused.valid, report.valid)
    assert ["Hôpital Nord"] == [row.record.name for row in (await bulk.get(job.id)).rows]
    with pytest.raises(ValueError, match="unknown encoding"):
        await bulk.validate(data, encoding="klingon")
    with pytest.raises(ValueError, match="delimiter"):
        await bulk.submit(data, delimiter="ab")


async def test_run_twice_is_a_conflict(fake: FakeDirectory) -> None:
    """A second run of a job that is running or finished is a JobConflictError."""
    slow = FakeDirectory(latency=0.2)
    bulk = processor(slow)
    job = await bulk.submit(csv_bytes(records(2)))

    async with anyio.create_task_group() as group:
        group.start_soon(bulk.run, job.id)
        await until_created(bulk, job.id, 0)
        with pytest.raises(JobConflictError):
            await bulk.run(job.id)
        with pytest.raises(JobConflictError):
            await bulk.run(job.id)
        with pytest.raises(JobConflictError):
            await bulk.delete(job.id)

    with pytest.raises(JobConflictError):
        await bulk.run(job.id)


async def test_cancel_stops_dispatching_and_resume_completes(fake: FakeDirectory) -> None:
    """Cancel lets in-flight creates finish, sends no more, and leaves a resumable job."""
    slow = FakeDirectory(latency=0.05)
    settings = attrs.evolve(UNPACED, concurrency=2)
    bulk = processor(slow, settings)
    job = await bulk.submit(csv_bytes(records(10)))

    async with anyio.create_task_group() as group:
        group.start_soon(bulk.run, job.id)
        await until_created(bulk, job.id, 1)
        await bulk.cancel(job.id)

    snapshot = await bulk.get(job.id)
    created = [row for row in snapshot.rows if row.state is RowState.CREATED]
    assert JobState.CANCELLED == snapshot.job.state
    assert 0 < len(created) < 10
    assert len(created) == len(slow.hospitals)

    summary = await bulk.run(job.id)

    assert JobState.COMPLETED == summary.state
    assert 10 == len(slow.hospitals)


async def test_cancel_a_pending_job(fake: FakeDirectory) -> None:
    """A job never run is cancelled at once and can be resumed later."""
    bulk = processor(fake)
    job = await bulk.submit(csv_bytes(records(2)))

    cancelled = await bulk.cancel(job.id)
    summary = await bulk.run(job.id)

    assert JobState.CANCELLED == cancelled.state
    assert JobState.COMPLETED == summary.state


async def test_delete_removes_every_batch(fake: FakeDirectory) -> None:
    """Delete removes the hospitals of every upstream batch; the job shows deleted."""
    bulk = processor(fake)
    job = await bulk.submit(csv_bytes(records(25)))
    await bulk.run(job.id)

    deleted = await bulk.delete(job.id)
    again = await bulk.delete(job.id)

    assert JobState.DELETED == deleted.state == again.state
    assert [] == fake.hospitals


async def test_unknown_job_ids(fake: FakeDirectory) -> None:
    """Every operation on an unknown id raises JobNotFoundError."""
    bulk = processor(fake)
    for operation in (bulk.run, bulk.cancel, bulk.delete, bulk.get, bulk.get_job):
        with pytest.raises(JobNotFoundError):
            await operation("missing")


async def test_watch_replays_then_follows_live(fake: FakeDirectory) -> None:
    """Several watchers see the same contiguous events, ending with job.finished;
    one attached later with ``after`` misses nothing."""
    slow = FakeDirectory(latency=0.01)
    bulk = processor(slow)
    job = await bulk.submit(csv_bytes(records(30)))
    seen: dict[str, list[int]] = {"a": [], "b": []}

    async def watch(name: str) -> None:
        async for event in bulk.watch(job.id):
            seen[name].append(event.seq)

    async with anyio.create_task_group() as group:
        group.start_soon(watch, "a")
        group.start_soon(watch, "b")
        await bulk.run(job.id)

    events = await bulk.store.read_events(job.id)
    assert list(range(1, len(events) + 1)) == seen["a"] == seen["b"]
    assert EventType.JOB_FINISHED == events[-1].type
    later = [event.seq async for event in bulk.watch(job.id, after=10)]
    assert list(range(11, len(events) + 1)) == later
    counters = events[-1].progress
    assert (30, 30, 30, 0) == (
        counters.total,
        counters.created,
        counters.activated,
        counters.failed,
    )


async def test_process_runs_in_its_own_task_group(fake: FakeDirectory) -> None:
    """process() submits, runs and streams events; the summary is there at the end."""
    bulk = processor(fake)
    types: list[EventType] = []

    async with bulk.process(csv_bytes(records(4))) as run:
        async for event in run.events():
            types.append(event.type)

    summary = await run.wait()
    assert EventType.JOB_ACCEPTED == types[0]
    assert EventType.JOB_FINISHED == types[-1]
    assert 4 == types.count(EventType.ROW_CREATED)
    assert JobState.COMPLETED == summary.state


async def test_outer_cancellation_leaves_the_job_interrupted(fake: FakeDirectory) -> None:
    """A run cancelled from outside (a shutdown) is marked interrupted, then resumable."""
    slow = FakeDirectory(latency=0.2)
    bulk = processor(slow)
    job = await bulk.submit(csv_bytes(records(3)))

    async with anyio.create_task_group() as group:
        group.start_soon(bulk.run, job.id)
        await until_created(bulk, job.id, 0)
        group.cancel_scope.cancel()  # a shutdown, with creates in flight

    assert JobState.INTERRUPTED == (await bulk.get(job.id)).job.state
    summary = await bulk.run(job.id)
    assert JobState.COMPLETED == summary.state
    assert 3 == len(slow.hospitals)


async def test_default_settings_match_the_real_upstream() -> None:
    """Out of the box the processor paces to 30 creates and 50 other calls per minute."""
    settings = ProcessorSettings()

    assert RateLimit(30, 60.0) == settings.create_limit
    assert RateLimit(50, 60.0) == settings.other_limit
    assert 20 == settings.batch_size


async def test_recover_interrupts_jobs_of_a_dead_process(fake: FakeDirectory) -> None:
    """A job left running by a process that died on this host is found interrupted at
    once; one whose owner is alive elsewhere with a valid lease is left alone."""
    store = MemoryStore()
    bulk = BulkProcessor(fake, store, UNPACED)
    dead = await bulk.submit(csv_bytes(records(3)))
    alive = await bulk.submit(csv_bytes(records(2, prefix="Other")))
    dead_owner = f"{socket.gethostname()}:{2**22 + 12345}:deadbeef"
    await store.transition(dead.id, JobState.RUNNING, owner=dead_owner, lease=60)
    await store.transition(alive.id, JobState.RUNNING, owner="elsewhere:1:x", lease=60)
    rows = await store.get_rows(dead.id)
    await store.save(dead.id, [attrs.evolve(rows[0], attempts=1)], [])

    recovered = await bulk.recover()

    assert [dead.id] == [job.id for job in recovered]
    snapshot = await bulk.get(dead.id)
    assert JobState.INTERRUPTED == snapshot.job.state
    assert [RowState.UNKNOWN, RowState.PENDING, RowState.PENDING] == [
        row.state for row in snapshot.rows
    ]
    assert JobState.RUNNING == (await bulk.get(alive.id)).job.state
    assert JobState.COMPLETED == (await bulk.run(dead.id)).state


async def test_recover_takes_over_an_expired_lease(fake: FakeDirectory) -> None:
    """A job whose owner stopped renewing its lease is declared interrupted."""
    store = MemoryStore()
    bulk = BulkProcessor(fake, store, UNPACED)
    job = await bulk.submit(csv_bytes(records(2)))
    await store.transition(job.id, JobState.RUNNING, owner="elsewhere:1:x", lease=0.01)
    await anyio.sleep(0.02)

    assert [job.id] == [recovered.id for recovered in await bulk.recover()]


async def test_a_run_that_loses_its_lease_stops(fake: FakeDirectory) -> None:
    """When another process takes a job over, the first runner stops sending at once."""
    slow = FakeDirectory(latency=0.05)
    settings = attrs.evolve(UNPACED, concurrency=1, lease_ttl=0.06)
    bulk = BulkProcessor(slow, settings=settings)
    job = await bulk.submit(csv_bytes(records(20)))

    async def take_over() -> None:
        await anyio.sleep(0.08)
        await bulk.store.transition(job.id, JobState.INTERRUPTED, owner=bulk.owner_id)

    async with anyio.create_task_group() as group:
        group.start_soon(take_over)
        with pytest.raises(JobConflictError, match="another process took it over"):
            await bulk.run(job.id)

    assert len(slow.hospitals) < 20
    assert JobState.INTERRUPTED == (await bulk.get(job.id)).job.state


async def test_cancel_does_not_wait_for_the_next_rate_window(fake: FakeDirectory) -> None:
    """Creates held back by the rate limit are dropped at once on cancel, instead of
    being sent when the next (minute-long) window opens."""
    settings = attrs.evolve(UNPACED, create_limit=RateLimit(2, 60.0))
    bulk = processor(fake, settings)
    job = await bulk.submit(csv_bytes(records(5)))

    with anyio.fail_after(10):  # a hang guard: without the fix this waits 60 s
        async with anyio.create_task_group() as group:
            group.start_soon(bulk.run, job.id)
            async for event in bulk.watch(job.id):
                if event.progress.created == 2:
                    break
            await bulk.cancel(job.id)

    assert JobState.CANCELLED == (await bulk.get(job.id)).job.state
    assert 2 == len(fake.hospitals)


async def test_racing_uploads_with_one_idempotency_key_make_one_job(fake: FakeDirectory) -> None:
    """Concurrent submits with the same key all get the same, single job."""
    bulk = processor(fake)
    ids: list[str] = []

    async def submit() -> None:
        ids.append((await bulk.submit(csv_bytes(records(3)), idempotency_key="same")).id)

    async with anyio.create_task_group() as group:
        for _ in range(5):
            group.start_soon(submit)

    assert 1 == len(set(ids))
    assert 1 == len(await bulk.list_jobs())


async def test_watch_ends_with_job_finished(fake: FakeDirectory) -> None:
    """The final state change and job.finished are one write: a watcher that is
    following when it lands ends with job.finished, and one that comes later too."""
    settings = attrs.evolve(UNPACED, watch_poll=0.02)
    bulk = processor(fake, settings)
    job = await bulk.submit(csv_bytes(records(1)))
    await bulk.store.transition(job.id, JobState.RUNNING)
    seen: list[EventType] = []

    async def watch() -> None:
        seen.extend([event.type async for event in bulk.watch(job.id)])

    async with anyio.create_task_group() as group:
        group.start_soon(watch)
        await anyio.sleep(0.03)  # the watcher follows the running job by now
        finished = EventDraft(type=EventType.JOB_FINISHED, progress=job.progress)
        await bulk.store.transition(job.id, JobState.COMPLETED, then=[finished])

    later = [event.type async for event in bulk.watch(job.id)]
    assert EventType.JOB_FINISHED == seen[-1]
    assert seen == later


class LateLandingDirectory:
    """A directory whose first create of ``name`` fails with a 5xx at once but lands
    ``delay`` seconds later, as when the upstream's worker is still busy with it."""

    def __init__(self, fake: FakeDirectory, group: TaskGroup, name: str, delay: float) -> None:
        self.fake, self.group, self.name, self.delay = fake, group, name, delay
        self.late = 1

    def __getattr__(self, attribute: str) -> object:
        return getattr(self.fake, attribute)

    async def create_hospital(self, record: HospitalRecord, batch_id: uuid.UUID) -> Hospital:
        if record.name == self.name and self.late:
            self.late -= 1

            async def land() -> None:
                await anyio.sleep(self.delay)
                await self.fake.create_hospital(record, batch_id)

            self.group.start_soon(land)
            raise MaybeLandedError("502 Bad Gateway", status=502)
        return await self.fake.create_hospital(record, batch_id)


async def test_a_create_that_lands_late_is_not_sent_twice(fake: FakeDirectory) -> None:
    """The batch is listed only once unanswered creates reached their landing horizon,
    so a create still running upstream is found, not sent again."""
    rows = records(3)
    settings = attrs.evolve(UNPACED, retry=attrs.evolve(UNPACED.retry, landing_horizon=0.3))

    async with anyio.create_task_group() as group:
        late = LateLandingDirectory(fake, group, rows[1].name, delay=0.1)
        bulk = BulkProcessor(late, settings=settings)  # type: ignore[arg-type]
        job = await bulk.submit(csv_bytes(rows))
        summary = await bulk.run(job.id)

    assert JobState.COMPLETED == summary.state
    assert collections.Counter({r.key(): 1 for r in rows}) == upstream_copies(
        fake, await bulk.get(job.id)
    )


async def test_a_store_failure_surfaces_as_store_error(fake: FakeDirectory) -> None:
    """Errors from inside the run's task groups reach the caller as the library error
    itself, not wrapped in an ExceptionGroup."""

    class FailingStore(MemoryStore):
        async def save(self, *args: Any, **kwargs: Any) -> Any:
            if (await self.get_job(args[0])).state is JobState.RUNNING:
                raise StoreError("database is locked")
            return await super().save(*args, **kwargs)

    bulk = BulkProcessor(fake, FailingStore(), UNPACED)
    job = await bulk.submit(csv_bytes(records(2)))

    with pytest.raises(StoreError, match="locked"):
        await bulk.run(job.id)
