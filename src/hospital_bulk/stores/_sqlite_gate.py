"""Pacing shared by every process that uses one SQLite file: :class:`SqliteRateGate`."""

from __future__ import annotations

import functools
import sqlite3
import time

from hospital_bulk._models import RateLimit
from hospital_bulk._pacing import CallKind, sliding_wait, throttle_delay, window_margin

from . import _sqlite_schema as schema
from ._sqlite_worker import Worker


class SqliteRateGate:
    """Sliding logs and a shared pause kept in the store's file: every process on the
    file (the service, the command line) paces against the same takes, and a process
    started after another exited knows what that one sent in the current window.

    The same rules as :class:`~hospital_bulk.LocalRateGate`: never more than ``count``
    takes in any span of the window plus :func:`~hospital_bulk._pacing.window_margin`;
    a 429 pauses everyone for Retry-After, or a window. A take is one small write
    (of a paced kind; an unpaced one only looks at the pause), committed with
    whatever other writes of the store are waiting (see :mod:`._sqlite_worker`).
    Times are the wall clock's, which every process on the host shares.
    """

    def __init__(
        self,
        worker: Worker,
        *,
        create_limit: RateLimit | None,
        other_limit: RateLimit | None,
        unpaced_pause: float = 1.0,
    ) -> None:
        self._worker = worker
        self._limits = {CallKind.CREATE: create_limit, CallKind.OTHER: other_limit}
        self._unpaced_pause = unpaced_pause
        self._takes = {kind: _take_op(kind, limit) for kind, limit in self._limits.items()}

    async def take(self, kind: CallKind) -> float:
        # Even an unpaced kind's look at the pause goes with the writes: it then shares
        # the trip to the worker thread of the writes queued with it (a row's save).
        return await self._worker.write(self._takes[kind])

    async def throttled(self, kind: CallKind, retry_after: float | None) -> float:
        delay = throttle_delay(self._limits[kind], retry_after, self._unpaced_pause)
        await self._worker.write(functools.partial(pace_pause, delay))
        return delay

    async def paused_for(self) -> float:
        return await self._worker.read(pace_paused)


def _take_op(kind: CallKind, limit: RateLimit | None) -> schema.Op[float]:
    if limit is None or limit.count <= 0:
        return pace_paused
    span = limit.window + window_margin(limit.window)
    return functools.partial(pace_take, kind.value, limit.count, span)


# -- the rate gate: each runs in a write transaction, so its clock is read under the
# file's write lock and the takes of all processes are numbered in one order -----------


def pace_take(kind: str, count: int, span: float, conn: sqlite3.Connection) -> float:
    """Take one of ``kind`` by the sliding rule (at most ``count`` in any ``span``) and
    return 0, or return the seconds to wait before asking again.

    Every statement is a lookup by key, whatever ``count``: the file keeps at most
    ``count`` takes per kind, and fewer once the oldest are a span old.
    """
    now = time.time()
    wait = pace_paused(conn, now)
    if wait > 0:
        return wait
    last = conn.execute(
        "SELECT seq, at FROM pace_takes WHERE kind = ? ORDER BY seq DESC LIMIT 1", (kind,)
    ).fetchone()
    seq = 1
    if last is not None:
        seq = last[0] + 1
        if last[1] > now:
            # The wall clock was set back: takes "in the future" would hold everyone
            # back for as long. They count as taken now, for a whole span.
            conn.execute("UPDATE pace_takes SET at = ? WHERE kind = ? AND at > ?", (now, kind, now))
        nth = conn.execute(
            "SELECT at FROM pace_takes WHERE kind = ? AND seq = ?", (kind, seq - count)
        ).fetchone()
        wait = sliding_wait(None if nth is None else min(nth[0], now), span, now)
        if wait > 0:
            return wait
    conn.execute("INSERT INTO pace_takes (kind, seq, at) VALUES (?, ?, ?)", (kind, seq, now))
    # The take count back no longer counts; nor do the oldest once a span old (two at
    # a time: more than one per take, so an idle spell's takes go too).
    conn.execute(
        "DELETE FROM pace_takes WHERE kind = ? AND seq IN"
        " (SELECT seq FROM pace_takes WHERE kind = ? ORDER BY seq LIMIT 2)"
        " AND (seq <= ? OR at <= ?)",
        (kind, kind, seq - count, now - span),
    )
    return 0.0


def pace_pause(delay: float, conn: sqlite3.Connection) -> None:
    """Pause every kind until ``delay`` seconds from now, unless a pause lasts longer."""
    conn.execute(
        "INSERT INTO pace_pause (id, until) VALUES (1, ?)"
        " ON CONFLICT (id) DO UPDATE SET until = max(until, excluded.until)",
        (time.time() + delay,),
    )


def pace_paused(conn: sqlite3.Connection, now: float | None = None) -> float:
    """Seconds until the pause ends (0 when none)."""
    found = conn.execute("SELECT until FROM pace_pause").fetchone()
    if found is None:
        return 0.0
    until: float = found[0]
    return max(0.0, until - (time.time() if now is None else now))
