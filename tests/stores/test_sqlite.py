"""SqliteStore beyond the shared contract: durability, sharing a file between
processes, schema versions, retention, URLs and errors."""

from __future__ import annotations

import contextlib
import datetime as dt
import pathlib
import sqlite3
from collections.abc import AsyncIterator

import anyio
import attrs
import pytest

from hospital_bulk import (
    BulkProcessor,
    CallKind,
    EventDraft,
    EventType,
    JobConflictError,
    JobNotFoundError,
    JobState,
    Progress,
    RateLimit,
    RowState,
    StoreError,
)
from hospital_bulk._jobs import utcnow
from hospital_bulk.stores import _sqlite_schema, default_store_url, open_store
from hospital_bulk.stores import sqlite as sqlite_module
from hospital_bulk.stores.sqlite import SqliteStore, path_from_url
from hospital_bulk.testing import FakeDirectory
from hospital_bulk.testing.store_contract import accepted, make_job
from tests.helpers import UNPACED, csv_bytes, records, take_when_free

pytestmark = pytest.mark.anyio


@pytest.fixture(name="path")
def fixture_path(tmp_path: pathlib.Path) -> pathlib.Path:
    """Where the store's file goes: nothing there yet."""
    return tmp_path / "jobs.sqlite3"


@pytest.fixture(name="store")
async def fixture_store(path: pathlib.Path) -> AsyncIterator[SqliteStore]:
    """A store on a fresh file, closed after the test."""
    store = await SqliteStore.open(f"sqlite:///{path}")
    try:
        yield store
    finally:
        await store.aclose()


@pytest.fixture(name="other")
async def fixture_other(store: SqliteStore, path: pathlib.Path) -> AsyncIterator[SqliteStore]:
    """A second store on the same file: what another process (the CLI) sees."""
    other = SqliteStore(path)
    try:
        yield other
    finally:
        await other.aclose()


def query(path: pathlib.Path, sql: str, *params: object) -> list[tuple[object, ...]]:
    """Run one statement on the file through a connection of its own."""
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as conn:
        return conn.execute(sql, params).fetchall()


def days_ago(days: float) -> str:
    """A time as the store writes it."""
    return (utcnow() - dt.timedelta(days=days)).isoformat(timespec="microseconds")


# -- durability -------------------------------------------------------------------------


async def test_data_survives_closing_and_reopening(store: SqliteStore, path: pathlib.Path) -> None:
    """A job, its rows and its events read back equal from a reopened file."""
    job, rows = make_job(2, key="key-1")
    await store.add_job(job, rows, accepted(2))
    await store.transition(job.id, JobState.RUNNING, owner="a")
    created = attrs.evolve(rows[0], state=RowState.CREATED, hospital_id=11, attempts=1)
    draft = EventDraft(
        type=EventType.ROW_CREATED,
        progress=Progress(total=2, created=1),
        row=1,
        hospital_id=11,
        creation_batch_id=rows[0].creation_batch_id,
    )
    await store.save(job.id, [created], [draft])
    expected = (
        await store.get_job(job.id),
        await store.get_rows(job.id),
        await store.read_events(job.id),
    )
    await store.aclose()

    reopened = await SqliteStore.open(f"sqlite:///{path}")
    try:
        actual = (
            await reopened.get_job(job.id),
            await reopened.get_rows(job.id),
            await reopened.read_events(job.id),
        )
        assert expected == actual
        assert [job.id] == [found.id for found in await reopened.active_jobs()]
        found = await reopened.find_job("key-1")
        assert found is not None
        assert job.id == found.id
    finally:
        await reopened.aclose()


async def test_a_job_stored_without_a_fingerprint_reads_back_without_one(
    store: SqliteStore, path: pathlib.Path
) -> None:
    """Jobs written before fingerprints were kept have none in their JSON: they read back
    with ``fingerprint`` None, found by their key as before, with no migration."""
    job, rows = make_job(1, key="old-key")
    await store.add_job(job, rows, accepted(1))
    query(path, "UPDATE jobs SET data = json_remove(data, '$.fingerprint')")
    assert [("fingerprint" in data,) for (data,) in query(path, "SELECT data FROM jobs")] == [
        (False,)
    ]

    found = await store.find_job("old-key")

    assert found is not None
    assert (job.id, None) == (found.id, found.fingerprint)


async def test_times_in_other_zones_come_back_equal(store: SqliteStore) -> None:
    """A job stamped in another time zone reads back as the same instants, in UTC."""
    job, rows = make_job(1)
    zone = dt.timezone(dt.timedelta(hours=2))
    stamped = attrs.evolve(job, created_at=dt.datetime(2024, 5, 1, 12, 0, 0, 5, tzinfo=zone))

    await store.add_job(stamped, rows, accepted(1))

    stored = await store.get_job(job.id)
    assert stamped.created_at == stored.created_at
    assert dt.UTC == stored.created_at.tzinfo


async def test_processor_run_reads_back_after_reopening(path: pathlib.Path) -> None:
    """A BulkProcessor run on SqliteStore completes, and a reopened file tells the
    same story: the same row outcomes, the same events."""
    fake = FakeDirectory(latency=0.001)
    store = SqliteStore(path)
    bulk = BulkProcessor(fake, store=store, settings=UNPACED)
    try:
        job = await bulk.submit(csv_bytes(records(45)), file_name="45.csv")
        summary = await bulk.run(job.id)
        expected = (await store.get_rows(job.id), await store.read_events(job.id))
    finally:
        await store.aclose()

    assert JobState.COMPLETED == summary.state
    assert 45 == len(fake.hospitals)
    reopened = await SqliteStore.open(f"sqlite:///{path}")
    try:
        actual = (await reopened.get_rows(job.id), await reopened.read_events(job.id))
        assert expected == actual
        assert {RowState.ACTIVATED} == {row.state for row in actual[0]}
        assert list(range(1, len(actual[1]) + 1)) == [event.seq for event in actual[1]]
        assert EventType.JOB_FINISHED == actual[1][-1].type
    finally:
        await reopened.aclose()


# -- two processes on one file ----------------------------------------------------------


async def test_racing_starts_from_two_processes_only_one_wins(
    store: SqliteStore, other: SqliteStore
) -> None:
    """Pending -> running raced through two stores on one file: exactly one wins."""
    job, rows = make_job()
    await store.add_job(job, rows, accepted())
    wins: list[bool] = []

    async def start(through: SqliteStore) -> None:
        try:
            await through.transition(job.id, JobState.RUNNING)
        except JobConflictError:
            wins.append(False)
        else:
            wins.append(True)

    async with anyio.create_task_group() as group:
        for index in range(10):
            group.start_soon(start, (store, other)[index % 2])

    assert [True] == [win for win in wins if win]
    assert 10 == len(wins)
    assert 1 == (await other.get_job(job.id)).runs


async def test_events_from_two_processes_are_numbered_without_gaps(
    store: SqliteStore, other: SqliteStore
) -> None:
    """Saves interleaved through two stores number events 1..n, none lost."""
    job, rows = make_job()
    await store.add_job(job, rows, accepted())

    async with anyio.create_task_group() as group:
        for index in range(40):
            group.start_soon((store, other)[index % 2].save, job.id, [], [accepted(), accepted()])

    events = await other.read_events(job.id)
    assert list(range(1, 82)) == [event.seq for event in events]
    assert 81 == (await store.get_job(job.id)).last_seq


async def test_two_processes_pace_through_one_gate(store: SqliteStore, other: SqliteStore) -> None:
    """Takes through one store's gate count against another's on the same file, and a
    429 seen by one pauses the other: the CLI and the service pace together."""
    limit = RateLimit(4, 30.0)
    gates = [store.rate_gate(limit, None, 1.0), other.rate_gate(limit, None, 1.0)]

    async with anyio.create_task_group() as group:
        for index in range(4):
            group.start_soon(gates[index % 2].take, CallKind.CREATE)
    waits = [await gate.take(CallKind.CREATE) for gate in gates]
    await gates[0].throttled(CallKind.OTHER, 5.0)

    assert all(0 < wait <= 30.0 + 1.0 for wait in waits), waits
    assert 4.0 < await gates[1].take(CallKind.OTHER) <= 5.0
    assert [(4,)] == query(store_path(store), "SELECT count(*) FROM pace_takes")


async def test_a_reopened_file_remembers_the_takes_of_the_window(path: pathlib.Path) -> None:
    """A process that sent creates and exited leaves them in the file: the next one to
    open it waits for their window before sending more than the rest of the limit."""
    limit = RateLimit(3, 30.0)
    first = await SqliteStore.open(f"sqlite:///{path}")
    gate = first.rate_gate(limit, None, 1.0)
    takes = [await gate.take(CallKind.CREATE) for _ in range(2)]
    await first.aclose()

    second = await SqliteStore.open(f"sqlite:///{path}")
    try:
        gate = second.rate_gate(limit, None, 1.0)
        after = [await gate.take(CallKind.CREATE) for _ in range(2)]
    finally:
        await second.aclose()

    assert [0.0, 0.0] == takes
    assert 0.0 == after[0]
    assert 0 < after[1] <= 30.0 + 1.0


async def test_takes_older_than_a_window_are_forgotten(store: SqliteStore) -> None:
    """The file keeps only the takes that can still hold the next one back."""
    gate = store.rate_gate(RateLimit(2, 0.05), None, 1.0)
    for _ in range(5):
        await take_when_free(gate)

    assert query(store_path(store), "SELECT count(*) FROM pace_takes")[0][0] <= 2


async def test_takes_dated_in_the_future_count_as_taken_now(
    store: SqliteStore, path: pathlib.Path
) -> None:
    """After the wall clock is set back, takes it dated "in the future" hold the next
    ones back for one window from now, not for as long as the clock jumped."""
    gate = store.rate_gate(RateLimit(1, 30.0), None, 1.0)
    await store.ping()  # the file exists, migrated
    query(path, "INSERT INTO pace_takes (kind, seq, at) VALUES ('create', 1, 4e9)")

    wait = await gate.take(CallKind.CREATE)

    assert 29.0 < wait <= 30.0 + 1.0


def store_path(store: SqliteStore) -> pathlib.Path:
    return pathlib.Path(store.path)


async def test_waiting_reader_sees_an_event_saved_by_another_process(
    store: SqliteStore, other: SqliteStore
) -> None:
    """read_events(wait=...) on one store returns an event saved through another."""
    job, rows = make_job()
    await store.add_job(job, rows, accepted())
    seen: list[int] = []

    async def reader() -> None:
        seen.extend(event.seq for event in await other.read_events(job.id, 1, wait=5.0))

    with anyio.fail_after(3):
        async with anyio.create_task_group() as group:
            group.start_soon(reader)
            await anyio.sleep(0.05)
            await store.save(job.id, [], [accepted()])

    assert [2] == seen


async def test_a_write_through_the_same_store_wakes_readers_at_once(
    store: SqliteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In-process readers are woken by the write itself, not by polling."""
    monkeypatch.setattr(sqlite_module, "POLL_INTERVAL", 60.0)
    job, rows = make_job()
    await store.add_job(job, rows, accepted())
    seen: list[int] = []

    async def reader() -> None:
        seen.extend(event.seq for event in await store.read_events(job.id, 1, wait=30.0))

    with anyio.fail_after(3):
        async with anyio.create_task_group() as group:
            group.start_soon(reader)
            await anyio.sleep(0.05)
            await store.save(job.id, [], [accepted()])

    assert [2] == seen


async def test_a_write_waits_for_the_lock_then_gives_up(path: pathlib.Path) -> None:
    """A write blocked by another process's transaction beyond the busy timeout
    fails with StoreError; once the lock is gone, writes work again."""
    store = await SqliteStore.open(f"sqlite:///{path}", busy_timeout=0.1)
    job, rows = make_job()
    try:
        with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as blocker:
            blocker.execute("BEGIN IMMEDIATE")
            with pytest.raises(StoreError, match="locked"):
                await store.add_job(job, rows, accepted())
            blocker.execute("ROLLBACK")

        await store.add_job(job, rows, accepted())

        assert 1 == (await store.get_job(job.id)).last_seq
    finally:
        await store.aclose()


# -- writes committed together ----------------------------------------------------------


async def test_one_failing_write_leaves_the_others_of_its_batch(store: SqliteStore) -> None:
    """Concurrent writes share transactions, yet a write to an unknown job fails alone."""
    job, rows = make_job()
    await store.add_job(job, rows, accepted())
    failures: list[str] = []

    async def save(job_id: str) -> None:
        try:
            await store.save(job_id, [], [accepted()])
        except JobNotFoundError as error:
            failures.append(error.job_id)

    async with anyio.create_task_group() as group:
        for index in range(20):
            group.start_soon(save, "nope" if index == 7 else job.id)

    assert ["nope"] == failures
    assert list(range(1, 21)) == [event.seq for event in await store.read_events(job.id)]


async def test_duplicate_idempotency_key_is_refused(store: SqliteStore) -> None:
    """Two jobs never share an idempotency key, even if submitted at the same time."""
    first, rows = make_job(key="same")
    second, _ = make_job(key="same")
    await store.add_job(first, rows, accepted())

    with pytest.raises(StoreError, match="same"):
        await store.add_job(second, rows, accepted())

    with pytest.raises(JobNotFoundError):
        await store.get_job(second.id)


# -- schema versions --------------------------------------------------------------------


async def test_a_new_file_has_the_current_schema_version(
    store: SqliteStore, path: pathlib.Path
) -> None:
    """user_version counts the migrations applied."""
    assert [(len(_sqlite_schema.MIGRATIONS),)] == query(path, "PRAGMA user_version")


async def test_opening_applies_new_migrations_once(
    path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An older file gets only the migrations it lacks; opening it again applies none
    (the probe table would already exist) and keeps the data."""
    store = await SqliteStore.open(f"sqlite:///{path}")
    job, rows = make_job()
    await store.add_job(job, rows, accepted())
    await store.aclose()
    migrations = (*_sqlite_schema.MIGRATIONS, ("CREATE TABLE probe (x)",))
    monkeypatch.setattr(_sqlite_schema, "MIGRATIONS", migrations)

    for _ in range(2):
        store = await SqliteStore.open(f"sqlite:///{path}")
        try:
            assert job.id == (await store.get_job(job.id)).id
        finally:
            await store.aclose()

    assert [(len(migrations),)] == query(path, "PRAGMA user_version")
    assert [(0,)] == query(path, "SELECT count(*) FROM probe")


async def test_a_file_from_a_newer_release_is_refused(path: pathlib.Path) -> None:
    """A schema version beyond ours is an error, not a guess; the file is left alone."""
    newer = len(_sqlite_schema.MIGRATIONS) + 1
    query(path, f"PRAGMA user_version = {newer}")

    with pytest.raises(StoreError, match="newer"):
        await SqliteStore.open(f"sqlite:///{path}")

    assert [(newer,)] == query(path, "PRAGMA user_version")


# -- retention --------------------------------------------------------------------------


async def _job_in(store: SqliteStore, *path: JobState) -> str:
    job, rows = make_job()
    await store.add_job(job, rows, accepted())
    for state in path:
        await store.transition(job.id, state)
    return job.id


async def test_purge_removes_only_old_finished_jobs(store: SqliteStore, path: pathlib.Path) -> None:
    """Finished and deleted jobs older than the retention go, rows and events with them;
    pending, active, interrupted and recent jobs stay."""
    running, completed = JobState.RUNNING, JobState.COMPLETED
    old_finished = [
        await _job_in(store, running, completed),
        await _job_in(store, running, JobState.COMPLETED_WITH_ERRORS),
        await _job_in(store, running, JobState.FAILED),
        await _job_in(store, JobState.CANCELLED),
        await _job_in(store, JobState.DELETED),
    ]
    old_kept = [
        await _job_in(store),
        await _job_in(store, running),
        await _job_in(store, running, JobState.ACTIVATING),
        await _job_in(store, running, JobState.INTERRUPTED),
    ]
    recent = await _job_in(store, running, completed)
    for job_id in old_finished + old_kept:
        query(path, "UPDATE jobs SET updated_at = ? WHERE id = ?", days_ago(31), job_id)

    assert len(old_finished) == await store.purge_expired()

    assert sorted([*old_kept, recent]) == sorted(job.id for job in await store.list_jobs())
    for job_id in old_finished:
        with pytest.raises(JobNotFoundError):
            await store.get_rows(job_id)
    assert [(len(old_kept) + 1,)] == query(path, "SELECT count(DISTINCT job_id) FROM rows")
    assert [(len(old_kept) + 1,)] == query(path, "SELECT count(DISTINCT job_id) FROM events")


async def test_opening_purges_expired_jobs(store: SqliteStore, path: pathlib.Path) -> None:
    """Retention runs at open too; ``retention=None`` keeps everything."""
    old = await _job_in(store, JobState.CANCELLED)
    query(path, "UPDATE jobs SET updated_at = ? WHERE id = ?", days_ago(31), old)
    await store.aclose()

    keeping = await SqliteStore.open(f"sqlite:///{path}", retention=None)
    try:
        assert [old] == [job.id for job in await keeping.list_jobs()]
        assert 0 == await keeping.purge_expired()
    finally:
        await keeping.aclose()
    purging = await SqliteStore.open(f"sqlite:///{path}")
    try:
        assert [] == await purging.list_jobs()
    finally:
        await purging.aclose()


# -- URLs -------------------------------------------------------------------------------


async def test_open_accepts_the_default_url(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """default_store_url() opens as is, creating the missing directories."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    url = default_store_url()

    store = await open_store(url)
    try:
        assert isinstance(store, SqliteStore)
        await store.ping()
    finally:
        await store.aclose()

    assert (tmp_path / "data" / "hospital-bulk" / "jobs.sqlite3").is_file()


async def test_open_relative_path(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Three slashes and a relative path: relative to the working directory."""
    monkeypatch.chdir(tmp_path)

    store = await SqliteStore.open("sqlite:///state/jobs.sqlite3")
    await store.aclose()

    assert (tmp_path / "state" / "jobs.sqlite3").is_file()


async def test_open_in_memory(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """sqlite:///:memory: is a working store that leaves no file behind."""
    monkeypatch.chdir(tmp_path)
    store = await SqliteStore.open("sqlite:///:memory:")
    job, rows = make_job()
    try:
        await store.add_job(job, rows, accepted())
        assert rows == await store.get_rows(job.id)
    finally:
        await store.aclose()

    assert [] == [entry async for entry in anyio.Path(tmp_path).iterdir()]


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite:///jobs.sqlite3", "jobs.sqlite3"),
        ("sqlite:////var/lib/hb/jobs.sqlite3", "/var/lib/hb/jobs.sqlite3"),
        ("SQLITE:///a b/jobs%20x.sqlite3", "a b/jobs%20x.sqlite3"),
        ("sqlite:///:memory:", ":memory:"),
    ],
)
def test_path_from_url(url: str, expected: str) -> None:
    """Everything after sqlite:/// is the path, taken literally."""
    assert expected == path_from_url(url)


def test_path_from_url_in_the_home_directory(monkeypatch: pytest.MonkeyPatch) -> None:
    """A leading ~ is the home directory, as the command line's help shows the default."""
    monkeypatch.setenv("HOME", "/home/someone")

    assert "/home/someone/.local/jobs.sqlite3" == path_from_url("sqlite:///~/.local/jobs.sqlite3")


@pytest.mark.parametrize(
    "url", ["sqlite://host/jobs.sqlite3", "sqlite:///", "sqlite://", "memory://", "x?y"]
)
def test_path_from_bad_url(url: str) -> None:
    """Hosts, empty paths, other schemes are refused."""
    with pytest.raises(ValueError, match="URL"):
        path_from_url(url)


def test_path_from_url_with_a_query() -> None:
    """Options in a query string are refused rather than taken as part of the name."""
    with pytest.raises(ValueError, match="query"):
        path_from_url("sqlite:///jobs.sqlite3?mode=ro")


# -- errors -----------------------------------------------------------------------------


async def test_unwritable_path_is_a_store_error_naming_it(tmp_path: pathlib.Path) -> None:
    """A directory that cannot be created (a file is in the way) fails at open."""
    (tmp_path / "file").write_text("not a directory")
    path = tmp_path / "file" / "jobs.sqlite3"

    with pytest.raises(StoreError, match=str(path)):
        await SqliteStore.open(f"sqlite:///{path}")


async def test_a_file_that_is_no_database_is_a_store_error(path: pathlib.Path) -> None:
    """Opening something else fails with the path in the message."""
    await anyio.Path(path).write_text("name,address\n" * 1000)

    with pytest.raises(StoreError, match=str(path)):
        await SqliteStore.open(f"sqlite:///{path}")


async def test_a_closed_store_refuses_work(store: SqliteStore) -> None:
    """After aclose() (which may be called again), calls fail with StoreError."""
    await store.aclose()
    await store.aclose()

    with pytest.raises(StoreError, match="closed"):
        await store.ping()
    job, rows = make_job()
    with pytest.raises(StoreError, match="closed"):
        await store.add_job(job, rows, accepted())
