"""An unavailable directory, and creates that land after their caller gave up.

Outages: the job waits (``waiting_for_directory``), probes, and goes on by itself; past
the deadline it stops ``interrupted`` without failing a row, and a resume completes it.
Late landings: a create held past the client's timeout is found, never sent twice.
"""

from __future__ import annotations

import collections
from collections.abc import Iterator
from uuid import UUID

import anyio
import attrs
import httpx
import pytest

from hospital_bulk import (
    BulkProcessor,
    DirectoryTimeouts,
    EventType,
    Hospital,
    HospitalRecord,
    HttpDirectoryClient,
    JobState,
    MaybeLandedError,
    RowState,
)
from hospital_bulk.testing import FakeDirectory
from tests.helpers import UNPACED, csv_bytes, records, upstream_copies
from tests.servers import UvicornServer

pytestmark = pytest.mark.anyio

#: Probes start at once and back off to 0.2 s; a call waits up to 30 s.
OUTAGE = attrs.evolve(
    UNPACED,
    retry=attrs.evolve(UNPACED.retry, backoff_initial=0.01, probe_max=0.2, outage_deadline=30),
)


async def test_an_outage_makes_the_job_wait_then_it_completes_by_itself() -> None:
    """Down mid-job: the job moves to waiting_for_directory with the error, then back, and
    completes with no failed row and each hospital once, all active."""
    fake = FakeDirectory(latency=0.01)
    rows = records(60)
    bulk = BulkProcessor(fake, settings=attrs.evolve(OUTAGE, concurrency=5))
    job = await bulk.submit(csv_bytes(rows))
    states: list[JobState] = []
    unavailable: list[str | None] = []

    async with anyio.create_task_group() as group:
        run = await bulk.start(job.id, group)
        async for event in run.events():
            if event.type is EventType.ROW_CREATED and event.progress.created == 20:
                fake.outage(1.0)
            if event.type is EventType.JOB_STATE_CHANGED:
                assert event.state is not None
                states.append(event.state)
            if event.type is EventType.DIRECTORY_UNAVAILABLE:
                unavailable.append(event.error)
    summary = await run.wait()

    assert JobState.COMPLETED == summary.state
    assert 0 == summary.failed_hospitals
    assert JobState.WAITING_FOR_DIRECTORY in states
    after = states[states.index(JobState.WAITING_FOR_DIRECTORY) + 1]
    assert after in (JobState.RUNNING, JobState.ACTIVATING)
    assert unavailable
    assert all("HTTP 503" in (error or "") for error in unavailable)
    snapshot = await bulk.get(job.id)
    assert collections.Counter({r.key(): 1 for r in rows}) == upstream_copies(fake, snapshot)
    assert all(hospital.active for hospital in fake.hospitals)


async def test_rows_created_before_an_outage_are_activated_with_their_batch() -> None:
    """The outage comes when half a batch is created: once it is over, the batch is
    completed and activated, the rows created before it included."""
    fake = FakeDirectory(latency=0.01)
    rows = records(20)
    bulk = BulkProcessor(fake, settings=attrs.evolve(OUTAGE, concurrency=2))
    job = await bulk.submit(csv_bytes(rows))

    async with anyio.create_task_group() as group:
        run = await bulk.start(job.id, group)
        async for event in run.events():
            if event.type is EventType.ROW_CREATED and event.progress.created == 10:
                fake.outage(0.5)
    summary = await run.wait()

    assert (JobState.COMPLETED, 20, 0) == (
        summary.state,
        summary.processed_hospitals,
        summary.failed_hospitals,
    )
    assert 20 == len(fake.hospitals)
    assert all(hospital.active for hospital in fake.hospitals)


async def test_an_outage_past_the_deadline_interrupts_and_resume_completes() -> None:
    """Past the deadline the job stops interrupted, with no row failed for the outage; a
    resume once the directory is back completes it, each hospital once."""
    fake = FakeDirectory(latency=0.01)
    rows = records(30)
    settings = attrs.evolve(
        OUTAGE, concurrency=3, retry=attrs.evolve(OUTAGE.retry, outage_deadline=0.5)
    )
    bulk = BulkProcessor(fake, settings=settings)
    job = await bulk.submit(csv_bytes(rows))

    async with anyio.create_task_group() as group:
        run = await bulk.start(job.id, group)
        async for event in run.events():
            if event.type is EventType.ROW_CREATED and event.progress.created == 10:
                fake.outage(3600)
    stopped = await run.wait()

    assert JobState.INTERRUPTED == stopped.state
    assert not [row for row in (await bulk.get(job.id)).rows if row.state is RowState.FAILED]

    fake.outage(0)
    resumed = await bulk.run(job.id)

    assert (JobState.COMPLETED, 30) == (resumed.state, resumed.processed_hospitals)
    snapshot = await bulk.get(job.id)
    assert collections.Counter({r.key(): 1 for r in rows}) == upstream_copies(fake, snapshot)


async def test_a_cold_start_is_waited_for() -> None:
    """The directory's first answers take a while (its cold start) and fail meanwhile: the
    job waits and completes, no row failed."""
    fake = FakeDirectory(latency=0.01)
    fake.outage(1.0)  # down when the job starts
    bulk = BulkProcessor(fake, settings=OUTAGE)
    job = await bulk.submit(csv_bytes(records(5)))

    summary = await bulk.run(job.id)

    assert (JobState.COMPLETED, 0) == (summary.state, summary.failed_hospitals)
    assert 5 == len(fake.hospitals)


# -- late landings, over a real socket ------------------------------------------------

STANDIN = "hospital_bulk_standin.app:app"


@pytest.fixture(name="standin", scope="module")
def fixture_standin() -> Iterator[UvicornServer]:
    env = {
        "HOSPITAL_DIRECTORY_LATENCY": "0.05",
        "HOSPITAL_DIRECTORY_CREATE_LIMIT": "0",
        "HOSPITAL_DIRECTORY_OTHER_LIMIT": "0",
    }
    with UvicornServer(STANDIN, env=env) as server:
        yield server


def standin_hospitals(url: str) -> list[dict[str, object]]:
    response = httpx.get(f"{url}/hospitals/", timeout=10)
    response.raise_for_status()
    hospitals: list[dict[str, object]] = response.json()
    return hospitals


async def test_a_create_held_past_the_client_timeout_lands_once(
    standin: UvicornServer,
) -> None:
    """The stand-in holds one create 6 s; the client gives up after 1 s. The row is not
    sent again before its landing horizon (timeout + margin) and the listing then finds
    it: each row once upstream, all active."""
    rows = records(5, prefix="Held")
    fault = {"fault": "hold", "seconds": 6, "name": rows[2].name}
    async with httpx.AsyncClient(base_url=standin.url, timeout=10) as admin:
        (await admin.post("/_standin/reset")).raise_for_status()
        (await admin.post("/_standin/faults", json=fault)).raise_for_status()
    settings = attrs.evolve(UNPACED, retry=attrs.evolve(UNPACED.retry, landing_horizon=1 + 7))
    client = HttpDirectoryClient(standin.url, timeouts=DirectoryTimeouts(read=1.0))
    async with client:
        bulk = BulkProcessor(client, settings=settings)
        job = await bulk.submit(csv_bytes(rows))
        summary = await bulk.run(job.id)

    hospitals = await anyio.to_thread.run_sync(standin_hospitals, standin.url)
    assert (JobState.COMPLETED, 5) == (summary.state, summary.processed_hospitals)
    assert collections.Counter(r.name for r in rows) == collections.Counter(
        str(h["name"]) for h in hospitals
    )
    assert all(h["active"] for h in hospitals)


class LandsAfterActivation(FakeDirectory):
    """The first create of ``name`` is lost (502) and lands only once its batch has
    been activated: later than any horizon we could have waited for."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name
        self.held: list[tuple[HospitalRecord, UUID]] = []

    async def create_hospital(self, record: HospitalRecord, batch_id: UUID) -> Hospital:
        if record.name == self.name and not self.held:
            self.held.append((record, batch_id))
            raise MaybeLandedError("502 Bad Gateway", status=502)
        return await super().create_hospital(record, batch_id)

    async def activate_batch(self, batch_id: UUID) -> int:
        count = await super().activate_batch(batch_id)
        for record, held_batch in self.held:
            if held_batch == batch_id:
                await super().create_hospital(record, held_batch)
        return count


async def test_a_copy_landing_after_activation_is_deleted() -> None:
    """Past the horizon of its unanswered create, the activated batch is listed once
    more: the inactive copy that landed after the activation is deleted."""
    rows = records(3, prefix="Late")
    directory = LandsAfterActivation(rows[0].name)
    bulk = BulkProcessor(directory, settings=UNPACED)
    job = await bulk.submit(csv_bytes(rows))

    summary = await bulk.run(job.id)

    assert (JobState.COMPLETED, 3) == (summary.state, summary.processed_hospitals)
    snapshot = await bulk.get(job.id)
    assert collections.Counter({r.key(): 1 for r in rows}) == upstream_copies(directory, snapshot)
    assert all(hospital.active for hospital in directory.hospitals)
