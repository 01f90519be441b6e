"""The SQLite store's file: its migrations, how our models map to its tables, and
the statements that read and write them.

Everything here is synchronous and takes the connection last; :mod:`._sqlite_worker`
runs it in its worker thread, inside the transactions it opens.

The file's ``PRAGMA user_version`` counts the migrations applied to it. Opening a
file applies the missing ones, in order, in one write transaction, so two processes
opening an old file at the same time upgrade it once. A file whose version is
higher than this release knows was written by a newer release: it is refused
rather than guessed at. Migrations are append-only: never edit one that has
shipped, add the next.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import attrs

from hospital_bulk._convert import structure, unstructure
from hospital_bulk._events import Event, EventDraft, transition_drafts
from hospital_bulk._jobs import (
    ACTIVE_STATES,
    FINISHED_STATES,
    Job,
    JobState,
    Progress,
    RowOutcome,
    transition_job,
    utcnow,
)
from hospital_bulk.exceptions import JobNotFoundError, StoreError

T = TypeVar("T")
#: An operation on the connection, run in the store's worker thread.
Op = Callable[[sqlite3.Connection], T]

#: Most events handed out by one read, so a watcher far behind catches up in steps.
READ_LIMIT = 1000
#: The states retention may delete: never one a runner works on or may resume.
PURGEABLE_STATES = FINISHED_STATES | {JobState.DELETED}

#: Each migration is a list of statements (not a script: ``executescript`` would
#: commit the surrounding transaction).
MIGRATIONS: Sequence[Sequence[str]] = (
    # 1: jobs, their rows and their events.
    (
        # Columns for what is queried or changed on the hot path; ``data`` holds
        # every other field of Job as JSON, so a new field needs no migration.
        # Times are UTC ISO strings of fixed width: they sort as text.
        """
        CREATE TABLE jobs (
            id TEXT PRIMARY KEY,
            state TEXT NOT NULL,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            idempotency_key TEXT UNIQUE,
            last_seq INTEGER NOT NULL,
            owner TEXT,
            lease_expires TEXT,
            progress TEXT NOT NULL,
            data TEXT NOT NULL
        )
        """,
        "CREATE INDEX jobs_by_created_at ON jobs (created_at)",
        # For active_jobs() and retention. Not on updated_at: every save changes it,
        # and an index on it would be rewritten on the hot path.
        "CREATE INDEX jobs_by_state ON jobs (state)",
        # WITHOUT ROWID: one B-tree per table instead of a table plus its key index.
        """
        CREATE TABLE rows (
            job_id TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
            row INTEGER NOT NULL,
            data TEXT NOT NULL,
            PRIMARY KEY (job_id, row)
        ) WITHOUT ROWID
        """,
        """
        CREATE TABLE events (
            job_id TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
            seq INTEGER NOT NULL,
            data TEXT NOT NULL,
            PRIMARY KEY (job_id, seq)
        ) WITHOUT ROWID
        """,
    ),
    # 2: the shared rate gate (SqliteRateGate): recent takes per kind of call, and
    # until when a 429 pauses everyone. Times are wall-clock seconds (time.time()):
    # every process on the file reads the same clock, unlike a monotonic one.
    (
        # Numbered per kind (seq), so that the N-th previous take is one lookup.
        """
        CREATE TABLE pace_takes (
            kind TEXT NOT NULL,
            seq INTEGER NOT NULL,
            at REAL NOT NULL,
            PRIMARY KEY (kind, seq)
        ) WITHOUT ROWID
        """,
        "CREATE TABLE pace_pause (id INTEGER PRIMARY KEY CHECK (id = 1), until REAL NOT NULL)",
    ),
)


def migrate(where: str, conn: sqlite3.Connection) -> int:
    """Bring the file up to date; returns the version it had.

    ``conn`` must be in autocommit mode (``isolation_level=None``).
    """
    migrations = MIGRATIONS  # read once: tests replace the module attribute
    target = len(migrations)
    # A quick look first, so that opening an up-to-date file takes no write lock.
    found = _version(conn)
    if found == target:
        return found
    conn.execute("BEGIN IMMEDIATE")
    try:
        # Again under the lock: another process may have migrated meanwhile.
        found = _version(conn)
        if found > target:
            raise StoreError(
                f"the job store {where} has schema version {found}, newer than this "
                f"release knows ({target}): upgrade hospital-bulk or use another file"
            )
        for version in range(found + 1, target + 1):
            for statement in migrations[version - 1]:
                conn.execute(statement)
            # user_version lives in the file header and is transactional.
            conn.execute(f"PRAGMA user_version = {version:d}")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return found


def _version(conn: sqlite3.Connection) -> int:
    (version,) = conn.execute("PRAGMA user_version").fetchone()
    return int(version)


# -- writes: each runs inside a write transaction the caller opened ----------------------


def add_job(
    job: Job, rows: Sequence[RowOutcome], draft: EventDraft, conn: sqlite3.Connection
) -> Event:
    if exists(job.id, conn):
        raise StoreError(f"a job with id {job.id!r} exists already")
    if job.idempotency_key is not None:
        other = conn.execute(
            "SELECT id FROM jobs WHERE idempotency_key = ?", (job.idempotency_key,)
        ).fetchone()
        if other is not None:
            raise StoreError(
                f"job {other[0]!r} has the idempotency key {job.idempotency_key!r} already"
            )
    now = utcnow()
    job = attrs.evolve(job, last_seq=1, progress=draft.progress, updated_at=now)
    conn.execute(f"INSERT INTO jobs ({_JOB_SELECT}) VALUES ({_JOB_MARKS})", _job_params(job))
    conn.executemany(_UPSERT_ROW, [_row_params(job.id, row) for row in rows])
    event = Event.from_draft(draft, job_id=job.id, seq=1, at=now)
    conn.execute(_INSERT_EVENT, _event_params(event, draft))
    return event


def save(
    job_id: str,
    rows: Sequence[RowOutcome],
    drafts: Sequence[EventDraft],
    conn: sqlite3.Connection,
) -> list[Event]:
    now = utcnow()
    first = 0
    if drafts:
        # One statement finds the job and numbers the events: the hot path.
        found = conn.execute(
            "UPDATE jobs SET last_seq = last_seq + ?, progress = ?, updated_at = ?"
            " WHERE id = ? RETURNING last_seq",
            (len(drafts), _json(unstructure(drafts[-1].progress)), _time(now), job_id),
        ).fetchall()
        if not found:
            raise JobNotFoundError(job_id)
        first = found[0][0] - len(drafts) + 1
    elif not exists(job_id, conn):
        raise JobNotFoundError(job_id)
    if rows:
        conn.executemany(_UPSERT_ROW, [_row_params(job_id, row) for row in rows])
    events = [
        Event.from_draft(draft, job_id=job_id, seq=first + index, at=now)
        for index, draft in enumerate(drafts)
    ]
    if events:
        conn.executemany(
            _INSERT_EVENT,
            [_event_params(event, draft) for event, draft in zip(events, drafts, strict=True)],
        )
    return events


def transition(
    job_id: str,
    state: JobState,
    progress: Progress | None,
    then: Sequence[EventDraft],
    allowed: frozenset[JobState] | None,
    owner: str | None,
    lease: float | None,
    conn: sqlite3.Connection,
) -> Job:
    job = get_job(job_id, conn)
    now = utcnow()
    drafts = transition_drafts(state, progress or job.progress, then)
    moved = transition_job(job, state, now, allowed=allowed, owner=owner, lease=lease)
    moved = attrs.evolve(moved, last_seq=job.last_seq + len(drafts), progress=drafts[-1].progress)
    conn.execute(
        f"UPDATE jobs SET ({_JOB_SELECT}) = ({_JOB_MARKS}) WHERE id = ?",
        (*_job_params(moved), job_id),
    )
    events = [
        Event.from_draft(draft, job_id=job_id, seq=job.last_seq + index, at=now)
        for index, draft in enumerate(drafts, start=1)
    ]
    conn.executemany(
        _INSERT_EVENT,
        [_event_params(event, draft) for event, draft in zip(events, drafts, strict=True)],
    )
    return moved


def renew_lease(job_id: str, owner: str, lease: float, conn: sqlite3.Connection) -> bool:
    expires = utcnow() + dt.timedelta(seconds=lease)
    renewed = conn.execute(
        f"UPDATE jobs SET lease_expires = ? WHERE id = ? AND owner = ? AND state IN ({_ACTIVE})",
        (_time(expires), job_id, owner),
    ).rowcount
    if renewed:
        return True
    if not exists(job_id, conn):
        raise JobNotFoundError(job_id)
    return False


def purge(retention: float, conn: sqlite3.Connection) -> int:
    cutoff = utcnow() - dt.timedelta(seconds=retention)
    states = sorted(state.value for state in PURGEABLE_STATES)
    # Rows and events follow by ON DELETE CASCADE (foreign_keys is on).
    return conn.execute(
        f"DELETE FROM jobs WHERE state IN ({', '.join('?' * len(states))}) AND updated_at < ?",
        (*states, _time(cutoff)),
    ).rowcount


# -- reads -----------------------------------------------------------------------------


def ping(conn: sqlite3.Connection) -> None:
    conn.execute("SELECT 1").fetchall()


def exists(job_id: str, conn: sqlite3.Connection) -> bool:
    return conn.execute("SELECT 1 FROM jobs WHERE id = ?", (job_id,)).fetchone() is not None


def get_job(job_id: str, conn: sqlite3.Connection) -> Job:
    record = conn.execute(f"SELECT {_JOB_SELECT} FROM jobs WHERE id = ?", (job_id,)).fetchone()
    if record is None:
        raise JobNotFoundError(job_id)
    return _job_from(record)


def find_job(idempotency_key: str, conn: sqlite3.Connection) -> Job | None:
    record = conn.execute(
        f"SELECT {_JOB_SELECT} FROM jobs WHERE idempotency_key = ?", (idempotency_key,)
    ).fetchone()
    return None if record is None else _job_from(record)


def list_jobs(limit: int, offset: int, conn: sqlite3.Connection) -> list[Job]:
    # rowid breaks ties between jobs created in the same microsecond: insertion order.
    records = conn.execute(
        f"SELECT {_JOB_SELECT} FROM jobs ORDER BY created_at DESC, rowid DESC LIMIT ? OFFSET ?",
        (limit, offset),
    ).fetchall()
    return [_job_from(record) for record in records]


def active_jobs(conn: sqlite3.Connection) -> list[Job]:
    records = conn.execute(
        f"SELECT {_JOB_SELECT} FROM jobs WHERE state IN ({_ACTIVE}) ORDER BY created_at, rowid"
    ).fetchall()
    return [_job_from(record) for record in records]


def get_rows(job_id: str, conn: sqlite3.Connection) -> list[RowOutcome]:
    records = conn.execute(
        "SELECT data FROM rows WHERE job_id = ? ORDER BY row", (job_id,)
    ).fetchall()
    if not records and not exists(job_id, conn):
        raise JobNotFoundError(job_id)
    return [structure(json.loads(data), RowOutcome) for (data,) in records]


def read_events(job_id: str, after: int, conn: sqlite3.Connection) -> list[Event]:
    records = conn.execute(
        "SELECT seq, data FROM events WHERE job_id = ? AND seq > ? ORDER BY seq LIMIT ?",
        (job_id, after, READ_LIMIT),
    ).fetchall()
    # Only an empty answer needs a second look: events imply their job.
    if not records and not exists(job_id, conn):
        raise JobNotFoundError(job_id)
    return [
        structure({**json.loads(data), "job_id": job_id, "seq": seq}, Event)
        for seq, data in records
    ]


# -- encoding --------------------------------------------------------------------------

#: Job fields kept in columns of their own; ``data`` holds the others as JSON.
_JOB_COLUMNS = (
    "id",
    "state",
    "created_at",
    "updated_at",
    "idempotency_key",
    "last_seq",
    "owner",
    "lease_expires",
    "progress",
)
_JOB_SELECT = ", ".join((*_JOB_COLUMNS, "data"))
_JOB_MARKS = ", ".join("?" * (len(_JOB_COLUMNS) + 1))
_ACTIVE = ", ".join(f"'{state.value}'" for state in sorted(ACTIVE_STATES))
_UPSERT_ROW = (
    "INSERT INTO rows (job_id, row, data) VALUES (?, ?, ?)"
    " ON CONFLICT (job_id, row) DO UPDATE SET data = excluded.data"
)
_INSERT_EVENT = "INSERT INTO events (job_id, seq, data) VALUES (?, ?, ?)"


def _job_params(job: Job) -> tuple[object, ...]:
    data = unstructure(job)
    for column in _JOB_COLUMNS:
        del data[column]
    return (
        job.id,
        job.state.value,
        _time(job.created_at),
        _time(job.updated_at),
        job.idempotency_key,
        job.last_seq,
        job.owner,
        None if job.lease_expires is None else _time(job.lease_expires),
        _json(unstructure(job.progress)),
        _json(data),
    )


def _job_from(record: tuple[Any, ...]) -> Job:
    *columns, data = record
    fields = dict(zip(_JOB_COLUMNS, columns, strict=True))
    fields["progress"] = json.loads(fields["progress"])
    return structure({**json.loads(data), **fields}, Job)


def _row_params(job_id: str, row: RowOutcome) -> tuple[object, ...]:
    return (job_id, row.row, _json(unstructure(row)))


def _event_params(event: Event, draft: EventDraft) -> tuple[object, ...]:
    # job_id and seq are key columns: not repeated in the JSON.
    data = unstructure(draft)
    data["at"] = _time(event.at)
    return (event.job_id, event.seq, _json(data))


def _time(value: dt.datetime) -> str:
    """UTC, fixed width (microseconds always written): such strings sort as times."""
    if value.tzinfo is None:  # naive times are UTC, as the converter reads them
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC).isoformat(timespec="microseconds")


def _json(value: object) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
