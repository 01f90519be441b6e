"""RedisStore beyond the store contract: several clients, leases, expiry, global pacing."""

from __future__ import annotations

import collections
import functools
import inspect
import json
import socket
import time
from collections.abc import AsyncIterator
from typing import Any, cast
from urllib.parse import urlsplit

import anyio
import attrs
import pytest
from redis.asyncio import Redis

from hospital_bulk import (
    BulkProcessor,
    CallKind,
    EventDraft,
    EventType,
    JobConflictError,
    JobState,
    JobStore,
    Progress,
    RateLimit,
    RowState,
    StoreError,
)
from hospital_bulk._pacing import window_margin
from hospital_bulk.stores import open_store
from hospital_bulk.stores.redis import RedisStore
from hospital_bulk.testing import FakeDirectory
from hospital_bulk.testing.store_contract import accepted, make_job
from tests.helpers import UNPACED, csv_bytes, records, take_when_free, upstream_copies

from .redis_server import ScratchRedisStore, redis_url, scratch_store

pytestmark = pytest.mark.anyio


@pytest.fixture(name="store")
async def fixture_store() -> AsyncIterator[ScratchRedisStore]:
    """A RedisStore on a namespace of its own, deleted afterwards."""
    store = await scratch_store()
    try:
        yield store
    finally:
        await store.aclose()


@pytest.fixture(name="other")
async def fixture_other(store: ScratchRedisStore) -> AsyncIterator[ScratchRedisStore]:
    """A second client on the same Redis and namespace, as another process would have."""
    other = await scratch_store(store.namespace)
    try:
        yield other
    finally:
        await other.aclose()


class DyingStore:
    """Passes every call to ``store`` until :meth:`kill`; then every call fails, as
    for a process that died (it can no longer write anything, not even "interrupted")."""

    def __init__(self, store: JobStore) -> None:
        self._store = store
        self.dead = False

    def kill(self) -> None:
        self.dead = True

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._store, name)
        if not inspect.iscoroutinefunction(method):
            return method  # e.g. rate_gate(): pacing lives on in Redis, not in the process

        async def call(*args: Any, **kwargs: Any) -> Any:
            if self.dead:
                raise StoreError("the process is dead")
            return await method(*args, **kwargs)

        return call


# -- opening ---------------------------------------------------------------------------


async def test_open_parses_host_port_and_database() -> None:
    """``open(redis://host:port/db)`` connects to that database of that server."""
    parts = urlsplit(redis_url())
    url = parts._replace(path="/3").geturl()

    store = await RedisStore.open(url, namespace="parse-only")
    try:
        options = store.client.connection_pool.connection_kwargs
        assert (parts.hostname, parts.port or 6379, 3) == (
            options["host"],
            options["port"],
            options["db"],
        )
        assert "parse-only" == store.namespace
        await store.ping()
    finally:
        await store.aclose()


async def test_open_store_picks_redis_by_scheme() -> None:
    """``open_store`` hands redis:// URLs to RedisStore."""
    store = await open_store(redis_url())
    try:
        assert isinstance(store, RedisStore)
    finally:
        await store.aclose()


async def test_open_fails_when_nothing_answers() -> None:
    """A Redis that does not answer is a StoreError at once, not at the first job."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    with pytest.raises(StoreError):
        await RedisStore.open(f"redis://127.0.0.1:{port}/0")


async def test_a_client_must_decode_responses() -> None:
    """RedisStore reads text: a client left returning bytes is refused up front."""
    client = Redis.from_url(redis_url())
    try:
        with pytest.raises(ValueError, match="decode_responses"):
            RedisStore(client)
    finally:
        await client.aclose()


# -- events ----------------------------------------------------------------------------


async def test_a_waiting_reader_wakes_on_another_clients_save(
    store: RedisStore, other: RedisStore
) -> None:
    """A reader blocked in XREAD on one client wakes when another client saves."""
    job, rows = make_job()
    await store.add_job(job, rows, accepted())
    seen: list[int] = []

    async def reader() -> None:
        seen.extend(event.seq for event in await other.read_events(job.id, 1, wait=5.0))

    with anyio.fail_after(4):
        async with anyio.create_task_group() as group:
            group.start_soon(reader)
            await anyio.sleep(0.1)
            await store.save(job.id, [], [accepted()])

    assert [2] == seen


async def test_a_wait_longer_than_the_socket_timeout_is_fine(store: RedisStore) -> None:
    """Waiting for events blocks in steps shorter than the client's socket timeout."""
    job, rows = make_job()
    await store.add_job(job, rows, accepted())
    impatient = ScratchRedisStore(
        Redis.from_url(redis_url(), decode_responses=True, socket_timeout=0.4),
        namespace=store.namespace,
        owns_client=True,
    )
    try:
        assert [] == await impatient.read_events(job.id, 1, wait=0.9)
    finally:
        await impatient.aclose()


async def test_concurrent_saves_number_events_without_gaps(
    store: RedisStore, other: RedisStore
) -> None:
    """50 tasks on two clients saving at once get distinct sequence numbers with no gap."""
    job, rows = make_job()
    await store.add_job(job, rows, accepted())
    seqs: list[int] = []

    async def save(client: RedisStore) -> None:
        events = await client.save(job.id, [], [accepted(), accepted()])
        seqs.extend(event.seq for event in events)

    async with anyio.create_task_group() as group:
        for index in range(50):
            group.start_soon(save, store if index % 2 else other)

    assert list(range(2, 102)) == sorted(seqs)
    assert list(range(1, 102)) == [event.seq for event in await other.read_events(job.id)]
    assert 101 == (await store.get_job(job.id)).last_seq


async def test_events_come_back_equal(store: RedisStore) -> None:
    """An event read back equals the one ``save`` returned, every field included."""
    job, rows = make_job()
    await store.add_job(job, rows, accepted())
    draft = EventDraft(
        type=EventType.ROW_FAILED,
        progress=Progress(total=3, failed=1, rate=1.5),
        row=2,
        creation_batch_id=rows[1].creation_batch_id,
        error_code="rejected",
        error="Batch cannot exceed 20 hospitals",
    )

    saved = await store.save(job.id, [], [draft])

    assert saved == await store.read_events(job.id, 1)


async def test_a_job_stored_without_a_fingerprint_reads_back_without_one(
    store: RedisStore,
) -> None:
    """Jobs written before fingerprints were kept have none in their JSON: they read back
    with ``fingerprint`` None, found by their key as before."""
    job, rows = make_job(1, key="old-key")
    await store.add_job(job, rows, accepted(1))
    key = store._job_key(job.id)
    core = json.loads(await store.client.hget(key, "core"))
    del core["fingerprint"]
    await store.client.hset(key, "core", json.dumps(core))

    found = await store.find_job("old-key")

    assert found is not None
    assert (job.id, None) == (found.id, found.fingerprint)


# -- transitions and leases ------------------------------------------------------------


async def test_racing_transitions_across_two_clients_only_one_wins(
    store: RedisStore, other: RedisStore
) -> None:
    """Two processes starting the same job: exactly one becomes its owner."""
    job, rows = make_job()
    await store.add_job(job, rows, accepted())
    winners: list[str] = []

    async def start(client: RedisStore, owner: str) -> None:
        try:
            await client.transition(job.id, JobState.RUNNING, owner=owner, lease=30)
        except JobConflictError:
            return
        winners.append(owner)

    async with anyio.create_task_group() as group:
        for index in range(20):
            group.start_soon(start, store if index % 2 else other, f"owner-{index}")

    assert 1 == len(winners)
    stored = await other.get_job(job.id)
    assert (JobState.RUNNING, winners[0], 1, 2) == (
        stored.state,
        stored.owner,
        stored.runs,
        stored.last_seq,
    )


async def test_transitions_are_not_disturbed_by_saves(store: RedisStore) -> None:
    """Saves racing a transition neither fail it nor lose their events."""
    job, rows = make_job()
    await store.add_job(job, rows, accepted())
    await store.transition(job.id, JobState.RUNNING, owner="a")

    async with anyio.create_task_group() as group:
        for _ in range(20):
            group.start_soon(store.save, job.id, [], [accepted()])
        group.start_soon(
            functools.partial(
                store.transition,
                job.id,
                JobState.ACTIVATING,
                owner="a",
            )
        )

    stored = await store.get_job(job.id)
    assert (JobState.ACTIVATING, 23) == (stored.state, stored.last_seq)
    assert list(range(1, 24)) == [event.seq for event in await store.read_events(job.id)]


async def test_a_second_processor_takes_over_a_dead_ones_job(
    store: RedisStore, other: RedisStore
) -> None:
    """Processor A dies mid-run without a word; once its lease expires B recovers the
    job and resumes it, and every row ends with exactly one hospital upstream."""
    fake = FakeDirectory(latency=0.1)
    dying = DyingStore(store)
    a = BulkProcessor(
        fake, cast(JobStore, dying), attrs.evolve(UNPACED, concurrency=4, lease_ttl=0.3)
    )
    b = BulkProcessor(fake, other, UNPACED)
    job = await a.submit(csv_bytes(records(30)))

    async def run_a() -> None:
        with pytest.raises(StoreError):
            await a.run(job.id)

    with anyio.fail_after(10):
        async with anyio.create_task_group() as group:
            group.start_soon(run_a)
            # The fake has no event to wait on: look until some creates landed.
            while len(fake.hospitals) < 6:  # noqa: ASYNC110
                await anyio.sleep(0.01)
            dying.kill()
        left_running = await other.get_job(job.id)
        # A's last renewal was before its death: its lease has run out one TTL later.
        await anyio.sleep(a.settings.lease_ttl)
        recovered = await b.recover()
        landed = len(fake.hospitals)
        states = collections.Counter(row.state for row in await other.get_rows(job.id))
        summary = await b.run(job.id)

    assert (JobState.RUNNING, a.owner_id) == (left_running.state, left_running.owner)
    assert [job.id] == [job.id for job in recovered]
    # Every create A sent is on record: created, or unknown if A died before the answer.
    assert landed == states[RowState.CREATED] + states[RowState.UNKNOWN]
    assert JobState.COMPLETED == summary.state
    snapshot = await b.get(job.id)
    assert {1} == set(upstream_copies(fake, snapshot).values())
    assert 30 == len(fake.hospitals)


# -- expiry ----------------------------------------------------------------------------


async def test_a_finished_jobs_keys_expire_and_a_resumed_ones_do_not(
    store: RedisStore,
) -> None:
    """Finishing sets the retention on every key of the job; resuming takes it off."""
    retained = await scratch_store(store.namespace, retention=60.0)
    job, rows = make_job(key="upload-1")
    await retained.add_job(job, rows, accepted())
    ns = store.namespace
    keys = [
        f"{ns}:job:{job.id}",
        f"{ns}:job:{job.id}:rows",
        f"{ns}:job:{job.id}:events",
        f"{ns}:idempotency:upload-1",
    ]

    async def ttls() -> list[int]:
        return [await store.client.pttl(key) for key in keys]

    try:
        await retained.transition(job.id, JobState.RUNNING)
        assert [-1, -1, -1, -1] == await ttls()
        await retained.transition(job.id, JobState.FAILED)
        assert all(55_000 < ttl <= 60_000 for ttl in await ttls()), await ttls()
        await retained.transition(job.id, JobState.RUNNING)
        assert [-1, -1, -1, -1] == await ttls()
    finally:
        await retained.aclose()


async def test_expired_jobs_leave_the_indexes(store: RedisStore) -> None:
    """A job whose keys expired is no longer listed, and the index forgets it."""
    short = await scratch_store(store.namespace, retention=0.05)
    kept, kept_rows = make_job()
    gone, gone_rows = make_job(key="gone")
    await short.add_job(kept, kept_rows, accepted())
    await short.add_job(gone, gone_rows, accepted())
    try:
        await short.transition(gone.id, JobState.CANCELLED)
        await anyio.sleep(0.2)

        assert [kept.id] == [job.id for job in await short.list_jobs()]
        assert await store.client.zscore(f"{store.namespace}:jobs", gone.id) is None
        assert await short.find_job("gone") is None
    finally:
        await short.aclose()


# -- the engine on Redis ---------------------------------------------------------------


async def test_a_processor_runs_a_job_end_to_end(store: RedisStore) -> None:
    """Submit, run and watch a 45-row job (three upstream batches) on RedisStore."""
    fake = FakeDirectory(latency=0.001)
    bulk = BulkProcessor(fake, store, UNPACED)
    job = await bulk.submit(csv_bytes(records(45)), idempotency_key="end-to-end")

    summary = await bulk.run(job.id)

    assert JobState.COMPLETED == summary.state
    snapshot = await bulk.get(job.id)
    assert {1} == set(upstream_copies(fake, snapshot).values())
    assert all(hospital.active for hospital in fake.hospitals)
    events = [event async for event in bulk.watch(job.id)]
    assert list(range(1, snapshot.job.last_seq + 1)) == [event.seq for event in events]
    assert EventType.JOB_FINISHED == events[-1].type
    assert job.id == (await bulk.submit(csv_bytes(records(45)), idempotency_key="end-to-end")).id


# -- global pacing ---------------------------------------------------------------------


async def test_gates_on_one_namespace_share_their_takes(
    store: RedisStore, other: RedisStore
) -> None:
    """Takes through one gate count against another's; the keys expire once the takes
    they hold can no longer hold one back. (The store contract checks the rules.)"""
    limit = RateLimit(3, 0.5)
    first = store.rate_gate(limit, None)
    second = other.rate_gate(limit, None)

    takes = [await first.take(CallKind.CREATE), await second.take(CallKind.CREATE)]
    takes.append(await first.take(CallKind.CREATE))
    wait = await second.take(CallKind.CREATE)

    assert [0.0, 0.0, 0.0] == takes
    assert 0 < wait <= limit.window + window_margin(limit.window)
    assert 0.0 == await second.take(CallKind.OTHER)  # unpaced
    key = f"{store.namespace}:pace:takes:create"
    assert 3 == await store.client.zcard(key)
    assert 0 < await store.client.pttl(key) <= (limit.window + 2.0) * 1000


async def test_a_take_after_an_idle_spell_finds_nothing_held(store: RedisStore) -> None:
    """Takes older than the span are dropped as the next take comes: the set never
    holds more than the limit's count."""
    limit = RateLimit(2, 0.05)
    gate = store.rate_gate(limit, None)
    for _ in range(5):
        await take_when_free(gate)

    assert await store.client.zcard(f"{store.namespace}:pace:takes:create") <= 2


async def test_two_processes_pace_to_one_shared_limit(store: RedisStore, other: RedisStore) -> None:
    """Two processors on one Redis, each with a 60-row job, against one directory that
    allows 40 creates per 2 s: both complete without a single 429."""
    limit = RateLimit(40, 2.0)
    fake = FakeDirectory(create_limit=limit, latency=0.05)
    settings = attrs.evolve(UNPACED, create_limit=limit)
    processors = [
        BulkProcessor(fake, client, settings, rate_gate=client.rate_gate(limit, None))
        for client in (store, other)
    ]
    jobs = [
        await bulk.submit(csv_bytes(records(60, prefix=f"P{n}")))
        for n, bulk in enumerate(processors)
    ]
    states: dict[str, str] = {}

    async def run(bulk: BulkProcessor, job_id: str) -> None:
        states[job_id] = (await bulk.run(job_id)).state

    started = time.monotonic()
    with anyio.fail_after(30):
        async with anyio.create_task_group() as group:
            for bulk, job in zip(processors, jobs, strict=True):
                group.start_soon(run, bulk, job.id)
    print(f"two processes, 120 creates at 40 per 2 s: {time.monotonic() - started:.2f} s")

    assert 0 == fake.stats.throttled
    assert {job.id: JobState.COMPLETED for job in jobs} == states
    assert 120 == len(fake.hospitals)
    assert {1} == set(collections.Counter(h.record().key() for h in fake.hospitals).values())
