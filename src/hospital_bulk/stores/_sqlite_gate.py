"""Pacing shared by every process that uses one SQLite file: :class:`SqliteRateGate`."""

from __future__ import annotations

import functools

from hospital_bulk._models import RateLimit
from hospital_bulk._pacing import CallKind, throttle_delay, window_margin

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
        await self._worker.write(functools.partial(schema.pace_pause, delay))
        return delay

    async def paused_for(self) -> float:
        return await self._worker.read(schema.pace_paused)


def _take_op(kind: CallKind, limit: RateLimit | None) -> schema.Op[float]:
    if limit is None or limit.count <= 0:
        return schema.pace_paused
    span = limit.window + window_margin(limit.window)
    return functools.partial(schema.pace_take, kind.value, limit.count, span)
