"""A store in one SQLite file: the embedded, durable default of the service and the CLI.

Each store holds one connection, used from a worker thread (``sqlite3`` blocks) and
serialized by a lock. Every write runs in a ``BEGIN IMMEDIATE`` transaction, which
takes the file's write lock before reading anything, so a compare-and-set and the
numbering of events stay atomic when several processes (the service and the
command line) share the file. The file is in WAL mode: readers never wait for the
writer, and with ``synchronous=NORMAL`` a commit costs a write to the log, not an
fsync: a process crash loses nothing committed; a power cut may lose the last
transactions but never corrupts the file.

The processes on one file pace together, too: the file keeps the recent takes of
the shared rate gate (:class:`SqliteRateGate`), so a process started after another
exited knows what that one sent in the current window.

Writes that arrive while another is in flight are committed together, in one
transaction and one trip to the worker thread, each under its own savepoint so
that one failing leaves the others intact. That is what keeps ``save()`` — called
once or twice per row — cheap when fifty rows finish at once.

URLs (see :func:`path_from_url`)::

    sqlite:///jobs.sqlite3              relative to the working directory
    sqlite:////var/lib/hb/jobs.sqlite3  absolute: the form default_store_url() gives
    sqlite:///~/jobs.sqlite3            in the home directory
    sqlite:///:memory:                  private to this store, gone when it closes
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence

import anyio

from hospital_bulk._events import Event, EventDraft
from hospital_bulk._jobs import Job, JobState, Progress, RowOutcome
from hospital_bulk._models import RateLimit

from . import _sqlite_schema as schema
from ._sqlite_gate import SqliteRateGate
from ._sqlite_schema import PURGEABLE_STATES, READ_LIMIT
from ._sqlite_worker import Worker

__all__ = [
    "BUSY_TIMEOUT",
    "DEFAULT_RETENTION",
    "POLL_INTERVAL",
    "PURGEABLE_STATES",
    "READ_LIMIT",
    "SqliteRateGate",
    "SqliteStore",
    "path_from_url",
]

#: How often a waiting reader looks for events written by another process (seconds);
#: writes through the same store wake its readers at once.
POLL_INTERVAL = 0.2
#: How long a write waits for another process's write lock before failing (seconds).
BUSY_TIMEOUT = 10.0
#: Finished jobs untouched for this long (30 days) are deleted with their rows and events.
DEFAULT_RETENTION = 30 * 24 * 60 * 60.0
_PREFIX = "sqlite:///"


def path_from_url(url: str) -> str:
    """The file a ``sqlite:///`` URL names.

    Everything after ``sqlite:///`` is the path, taken literally (no percent
    decoding: :func:`~hospital_bulk.stores.default_store_url` does not encode).
    ``sqlite:///jobs.sqlite3`` is relative to the working directory,
    ``sqlite:////abs/jobs.sqlite3`` (a fourth slash, the path's own) is absolute,
    and ``sqlite:///:memory:`` is a private in-memory database. A leading ``~`` is
    the home directory (``sqlite:///~/jobs.sqlite3``). Raises ValueError for anything
    else: a host (``sqlite://host/...``), no path, a query string.
    """
    if url[: len(_PREFIX)].lower() != _PREFIX:
        raise ValueError(
            f"not a SQLite store URL: {url!r}: use sqlite:///relative/path, "
            "sqlite:////absolute/path or sqlite:///:memory:"
        )
    path = url[len(_PREFIX) :]
    if not path:
        raise ValueError(f"the SQLite store URL {url!r} names no file")
    if "?" in path:
        raise ValueError(f"the SQLite store URL {url!r} has a query: it takes no options")
    # The command line's help shows the default as sqlite:///~/.local/...: honour it.
    return os.path.expanduser(path) if path.startswith("~") else path


class SqliteStore:
    """Jobs, rows and events in one SQLite file; see the module docstring.

    ``SqliteStore(path)`` connects on first use; :meth:`open` connects at once, so a
    file that cannot be used fails there. Either way, connecting applies the schema
    migrations and purges finished jobs untouched for ``retention`` seconds (``None``
    keeps them forever).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        retention: float | None = DEFAULT_RETENTION,
        busy_timeout: float = BUSY_TIMEOUT,
    ) -> None:
        self._worker = Worker(
            os.fspath(path), retention=retention, busy_timeout=busy_timeout, on_commit=self._wake
        )
        self._signals: dict[str, anyio.Event] = {}
        self._waiters: dict[str, int] = {}

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        retention: float | None = DEFAULT_RETENTION,
        busy_timeout: float = BUSY_TIMEOUT,
    ) -> SqliteStore:
        """Open (creating it and its directories) the file a ``sqlite:///`` URL names."""
        store = cls(path_from_url(url), retention=retention, busy_timeout=busy_timeout)
        try:
            await store.ping()
        except BaseException:
            await store.aclose()
            raise
        return store

    # Read-only: the worker's connection is made from them, so they are fixed at
    # construction, and kept there alone rather than copied here.

    @property
    def path(self) -> str:
        """The file (or ``:memory:``)."""
        return self._worker.path

    @property
    def retention(self) -> float | None:
        """Seconds a finished job stays untouched before it is purged; ``None``: for ever."""
        return self._worker.retention

    @property
    def busy_timeout(self) -> float:
        """Seconds a write waits for another process's write lock."""
        return self._worker.busy_timeout

    # -- the protocol ----------------------------------------------------------------

    async def add_job(self, job: Job, rows: Sequence[RowOutcome], event: EventDraft) -> Event:
        op = functools.partial(schema.add_job, job, rows, event)
        return await self._worker.write(op, wake=job.id)

    async def get_job(self, job_id: str) -> Job:
        return await self._worker.read(schema.get_job, job_id)

    async def find_job(self, idempotency_key: str) -> Job | None:
        return await self._worker.read(schema.find_job, idempotency_key)

    async def list_jobs(self, *, limit: int = 50, offset: int = 0) -> list[Job]:
        return await self._worker.read(schema.list_jobs, limit, offset)

    async def get_rows(self, job_id: str) -> list[RowOutcome]:
        return await self._worker.read(schema.get_rows, job_id)

    async def save(
        self, job_id: str, rows: Sequence[RowOutcome], events: Sequence[EventDraft]
    ) -> list[Event]:
        op = functools.partial(schema.save, job_id, rows, events)
        return await self._worker.write(op, wake=job_id if events else None)

    async def transition(
        self,
        job_id: str,
        state: JobState,
        progress: Progress | None = None,
        *,
        then: Sequence[EventDraft] = (),
        allowed: frozenset[JobState] | None = None,
        owner: str | None = None,
        lease: float | None = None,
    ) -> Job:
        op = functools.partial(
            schema.transition, job_id, state, progress, then, allowed, owner, lease
        )
        return await self._worker.write(op, wake=job_id)

    async def renew_lease(self, job_id: str, owner: str, lease: float) -> bool:
        return await self._worker.write(functools.partial(schema.renew_lease, job_id, owner, lease))

    async def active_jobs(self) -> list[Job]:
        return await self._worker.read(schema.active_jobs)

    async def read_events(self, job_id: str, after: int = 0, *, wait: float = 0.0) -> list[Event]:
        if wait <= 0:
            return await self._worker.read(schema.read_events, job_id, after)
        deadline = anyio.current_time() + wait
        self._waiters[job_id] = self._waiters.get(job_id, 0) + 1
        try:
            while True:
                # Taken before the read: a write committed after the read sets it.
                signal = self._signal(job_id)
                events = await self._worker.read(schema.read_events, job_id, after)
                remaining = deadline - anyio.current_time()
                if events or remaining <= 0:
                    return events
                # Writes through this store wake us at once; another process's
                # writes are only seen by looking again.
                with anyio.move_on_after(min(POLL_INTERVAL, remaining)):
                    await signal.wait()
        finally:
            self._forget_waiter(job_id)

    def rate_gate(
        self,
        create_limit: RateLimit | None,
        other_limit: RateLimit | None,
        unpaced_pause: float = 1.0,
    ) -> SqliteRateGate:
        """Pacing shared with every process on this file, remembered across restarts;
        a ``BulkProcessor`` on this store takes it by itself."""
        return SqliteRateGate(
            self._worker,
            create_limit=create_limit,
            other_limit=other_limit,
            unpaced_pause=unpaced_pause,
        )

    async def ping(self) -> None:
        await self._worker.read(schema.ping)

    async def aclose(self) -> None:
        await self._worker.aclose()

    # -- beyond the protocol ---------------------------------------------------------

    async def purge_expired(self) -> int:
        """Delete finished jobs (with their rows and events) untouched for longer than
        ``retention``; returns how many. Pending, active and interrupted jobs stay."""
        if self.retention is None:
            return 0
        return await self._worker.write(functools.partial(schema.purge, self.retention))

    # -- waking readers --------------------------------------------------------------

    def _signal(self, job_id: str) -> anyio.Event:
        signal = self._signals.get(job_id)
        if signal is None:
            signal = self._signals[job_id] = anyio.Event()
        return signal

    def _wake(self, job_id: str) -> None:
        signal = self._signals.pop(job_id, None)
        if signal is not None:
            signal.set()

    def _forget_waiter(self, job_id: str) -> None:
        # The last reader of a job drops its signal: jobs only another process
        # writes would otherwise leave one behind each.
        left = self._waiters[job_id] - 1
        if left:
            self._waiters[job_id] = left
        else:
            del self._waiters[job_id]
            self._signals.pop(job_id, None)
