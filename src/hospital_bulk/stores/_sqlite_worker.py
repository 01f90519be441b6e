"""The SQLite store's connection: opening it, running operations on it in a worker
thread, committing writes in groups, and translating its errors.

Kept apart from :mod:`.sqlite` so that the store there reads as the protocol alone
(which operation of :mod:`._sqlite_schema` each method runs, and how readers wait
for events), while how those operations reach the file — one connection used from
worker threads one at a time, ``BEGIN IMMEDIATE``, a savepoint per write of a
group — lives here, in one place.
"""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Generic, cast

import anyio
import anyio.to_thread

from hospital_bulk.exceptions import HospitalBulkError, StoreError

from . import _sqlite_schema as schema
from ._sqlite_schema import Op, T

#: Most writes committed in one transaction, so readers never wait long behind them.
MAX_BATCH = 256

MEMORY = ":memory:"


class _Write(Generic[T]):
    """One write waiting for, or done by, a batch."""

    __slots__ = ("error", "op", "taken", "value", "wake")

    def __init__(self, op: Op[T], wake: str | None) -> None:
        self.op = op
        self.wake = wake  # the job whose readers to wake once committed
        self.taken = False
        self.value: T | None = None
        self.error: BaseException | None = None

    def outcome(self) -> T:
        if self.error is not None:
            raise self.error
        return cast(T, self.value)


class Worker:
    """One connection to the file at ``path``, made on first use, and the lock that
    serializes its use.

    ``on_commit(job_id)`` is called, in the event loop, for each committed write
    that named a job to wake: the store wakes that job's waiting readers.
    """

    def __init__(
        self,
        path: str,
        *,
        retention: float | None,
        busy_timeout: float,
        on_commit: Callable[[str], None],
    ) -> None:
        self.path = path
        self.retention = retention
        self.busy_timeout = busy_timeout
        self._on_commit = on_commit
        self._conn: sqlite3.Connection | None = None
        self._closed = False
        self._lock = anyio.Lock()
        self._queue: list[_Write[Any]] = []

    async def read(self, op: Callable[..., T], *args: Any) -> T:
        async with self._lock:
            if self._closed:
                raise self._closed_error()
            # Not abandoned on cancellation: the lock must outlive the statement.
            return await anyio.to_thread.run_sync(self._run, functools.partial(op, *args))

    async def write(self, op: Op[T], *, wake: str | None = None) -> T:
        """Queue ``op``; whoever holds the lock next commits every queued write."""
        write = _Write(op, wake)
        self._queue.append(write)
        try:
            async with self._lock:
                # Usually taken already by the batch of a task ahead of us.
                while not write.taken:
                    await self._flush()
        except BaseException:
            # Cancelled before any batch took it: it never happens.
            if not write.taken:
                self._queue.remove(write)
            raise
        return write.outcome()

    async def aclose(self) -> None:
        # Shielded: a connection left open by a cancelled close would leak.
        with anyio.CancelScope(shield=True):
            async with self._lock:  # lets an operation in flight finish first
                self._closed = True
                conn, self._conn = self._conn, None
                if conn is not None:
                    await anyio.to_thread.run_sync(conn.close)

    async def _flush(self) -> None:
        batch = self._queue[:MAX_BATCH]
        del self._queue[:MAX_BATCH]
        for write in batch:
            write.taken = True
        if self._closed:
            for write in batch:
                write.error = self._closed_error()
            return
        await anyio.to_thread.run_sync(self._run_batch, batch)
        for write in batch:
            if write.error is None and write.wake is not None:
                self._on_commit(write.wake)

    def _run(self, op: Op[T]) -> T:
        """In the worker thread: connect if need be, run ``op``, translate errors."""
        try:
            return op(self._connection())
        except sqlite3.Error as exc:
            raise self._error(exc) from exc

    def _run_batch(self, batch: Sequence[_Write[Any]]) -> None:
        """In the worker thread: every write of ``batch`` in one transaction."""
        try:
            conn = self._connection()
            conn.execute("BEGIN IMMEDIATE")
        except Exception as exc:
            error = self._translate(exc)
            for write in batch:
                # One exception each: every caller raises (and extends) its own.
                write.error = StoreError(str(error))
                write.error.__cause__ = exc
            return
        # A savepoint each, so that one failing write leaves the others of the batch;
        # a batch of one needs none: its failure rolls the transaction back.
        alone = len(batch) == 1
        try:
            for write in batch:
                if not alone:
                    conn.execute("SAVEPOINT write")
                try:
                    write.value = write.op(conn)
                except Exception as exc:
                    if not alone:
                        conn.execute("ROLLBACK TO write")
                    write.error = self._translate(exc)
                if not alone:
                    conn.execute("RELEASE write")
            conn.execute("ROLLBACK" if alone and batch[0].error is not None else "COMMIT")
        except BaseException as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            # Nothing of the batch is committed: no write may report success. Those
            # refused on their own (a conflict, an unknown job) keep their answer.
            for write in batch:
                if write.error is None:
                    write.value = None
                    write.error = self._translate(exc) if isinstance(exc, Exception) else exc
            if not isinstance(exc, Exception):
                raise

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            self._conn = self._connect()
        return self._conn

    def _connect(self) -> sqlite3.Connection:
        if self.path != MEMORY:
            try:
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(
                    f"cannot create the directory of the job store {self.path}: {exc}"
                ) from exc
        # isolation_level=None: no implicit transactions; we BEGIN IMMEDIATE ourselves.
        conn = sqlite3.connect(
            self.path,
            timeout=self.busy_timeout,
            isolation_level=None,
            check_same_thread=False,  # used from worker threads, one at a time
        )
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000):d}")
            conn.execute("PRAGMA foreign_keys = ON")  # rows and events go with their job
            # A file system without shared memory keeps its old journal mode: slower
            # with concurrent readers, still correct, so the answer is not checked.
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            schema.migrate(self.path, conn)
            if self.retention is not None:
                conn.execute("BEGIN IMMEDIATE")
                schema.purge(self.retention, conn)
                conn.execute("COMMIT")
        except BaseException:
            conn.close()
            raise
        return conn

    def _translate(self, exc: Exception) -> Exception:
        if isinstance(exc, sqlite3.Error):
            return self._error(exc)
        if isinstance(exc, HospitalBulkError):
            return exc
        return StoreError(f"the job store {self.path} failed: {exc!r}")

    def _error(self, exc: sqlite3.Error) -> StoreError:
        code = getattr(exc, "sqlite_errorcode", None)
        if code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
            return StoreError(
                f"the job store {self.path} stayed locked by another connection for more "
                f"than {self.busy_timeout:g} s: {exc}"
            )
        if code == sqlite3.SQLITE_CANTOPEN:
            return StoreError(f"cannot open the job store {self.path}: {exc}")
        return StoreError(f"the job store {self.path} failed: {exc}")

    def _closed_error(self) -> StoreError:
        return StoreError(f"the job store {self.path} is closed")
