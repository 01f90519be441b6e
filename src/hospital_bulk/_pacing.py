"""Pacing: how fast the processor may call the upstream, shared by every job.

One concurrency limit and two rate limits — creates, and every other call — each
kept by the sliding rule: never more than N takes in any span of the window (plus a
margin), so that no limiter of that rate draws a 429 from us in steady state, fixed
or sliding, whenever its window opened. A 429 pauses everyone, because the quota it
reports is shared.

The gate that keeps the takes is :class:`LocalRateGate` for one process, or one a
store shared by several processes offers (``JobStore.rate_gate``: SQLite, Redis),
kept in wall-clock time, so that the processes on one store pace together and a
restarted one knows what was sent in the current window.
"""

from __future__ import annotations

import collections
import enum
import random
from collections.abc import Callable
from typing import Protocol

import anyio

from ._models import RateLimit


class CallKind(enum.Enum):
    CREATE = "create"
    OTHER = "other"


def window_margin(window: float) -> float:
    """Slack added to the window: takes ``count`` apart are at least a window plus this
    apart, so that the requests still arrive upstream at least a window apart. It must
    exceed how much the time from taking a token to arriving upstream varies
    (measured: up to ~0.1 s on loopback under load; a write to a shared store and a new
    TLS connection add more, hence up to 1 s)."""
    return min(1.0, 0.04 * window)


def full_jitter(attempt: int, *, initial: float, maximum: float) -> float:
    """Exponential backoff with full jitter: uniform in [0, min(maximum, initial * 2**attempt)]."""
    return random.uniform(0.0, min(maximum, initial * 2.0**attempt))


class SlidingLog:
    """At most ``limit.count`` takes in any span of ``limit.window`` (plus the margin):
    the next take waits until the ``count``-th previous one is that old.

    Safe against the upstream's limiter whatever it is: a fixed window opened at any
    moment holds at most ``count`` of our requests, and so does a sliding one. A
    window of our own, opened by our first take, would be safe only if the upstream's
    opened at the same moment, which a restart, another process or an idle spell undo.
    """

    __slots__ = ("_clock", "_span", "_takes", "limit")

    def __init__(self, limit: RateLimit, clock: Callable[[], float]) -> None:
        self.limit = limit
        self._clock = clock
        self._span = limit.window + window_margin(limit.window)
        self._takes: collections.deque[float] = collections.deque(maxlen=limit.count)

    def try_take(self) -> float:
        """Take one and return 0, or return how long to wait before asking again."""
        now, takes = self._clock(), self._takes
        nth_previous = takes[0] if len(takes) == takes.maxlen else None
        if (wait := sliding_wait(nth_previous, self._span, now)) > 0:
            return wait
        takes.append(now)  # the deque drops the oldest
        return 0.0


def sliding_wait(nth_previous: float | None, span: float, now: float) -> float:
    """The wait :class:`SlidingLog` imposes, from the ``count``-th previous take (``None``
    when there were fewer): for gates that keep their takes elsewhere."""
    if nth_previous is None:
        return 0.0
    return max(0.0, nth_previous + span - now)


def throttle_delay(
    limit: RateLimit | None, retry_after: float | None, unpaced_pause: float
) -> float:
    """How long a 429 pauses everyone: Retry-After when the upstream gives one; else a
    whole window of the limit broken, as we cannot know where the upstream's window
    stands (any window open now closes within one); ``unpaced_pause`` when unpaced."""
    if retry_after is not None:
        return retry_after
    if limit is None or limit.count <= 0:
        return unpaced_pause
    return limit.window


class RateGate(Protocol):
    """Rate accounting shared by everyone who calls the same upstream.

    :class:`LocalRateGate` serves one process; a store shared by several processes
    can offer one that all of them consult (``SqliteStore.rate_gate``,
    ``RedisStore.rate_gate``). Every gate keeps the same rules: :class:`SlidingLog`
    per paced kind, and one pause for all kinds after a 429 (:func:`throttle_delay`).
    """

    async def take(self, kind: CallKind) -> float:
        """Take one request of ``kind`` and return 0, or the seconds to wait before
        asking again."""
        ...

    async def throttled(self, kind: CallKind, retry_after: float | None) -> float:
        """Record a 429 and pause every caller; returns the pause in seconds."""
        ...

    async def paused_for(self) -> float:
        """Seconds until the current pause ends (0 when none)."""
        ...


class LocalRateGate:
    """Sliding logs and a shared pause, in this process's memory."""

    def __init__(
        self,
        *,
        create_limit: RateLimit | None,
        other_limit: RateLimit | None,
        unpaced_pause: float = 1.0,
        clock: Callable[[], float] = anyio.current_time,
    ) -> None:
        self._clock = clock
        self._unpaced_pause = unpaced_pause
        self._limits = {CallKind.CREATE: create_limit, CallKind.OTHER: other_limit}
        self._logs = {
            CallKind.CREATE: _log(create_limit, clock),
            CallKind.OTHER: _log(other_limit, clock),
        }
        self._paused_until = float("-inf")

    async def take(self, kind: CallKind) -> float:
        wait = self._paused_until - self._clock()
        if wait > 0:
            return wait
        log = self._logs[kind]
        return 0.0 if log is None else log.try_take()

    async def throttled(self, kind: CallKind, retry_after: float | None) -> float:
        """Pause every kind for :func:`throttle_delay`. The takes stay counted: they
        still hold the next ones back after a short Retry-After."""
        delay = throttle_delay(self._limits[kind], retry_after, self._unpaced_pause)
        self._paused_until = max(self._paused_until, self._clock() + delay)
        return delay

    async def paused_for(self) -> float:
        return max(0.0, self._paused_until - self._clock())


class Pacer:
    """One concurrency limit in this process, plus a rate gate (local or shared)."""

    def __init__(self, *, concurrency: int, gate: RateGate) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self._slots = anyio.CapacityLimiter(concurrency)
        self.gate = gate

    @property
    def concurrency(self) -> int:
        return int(self._slots.total_tokens)

    def slot(self, kind: CallKind, stop: anyio.Event | None = None) -> _Slot:
        """Hold one concurrency slot and one rate token of ``kind`` while calling.

        The slot is taken before the token: a token taken while waiting for a slot
        would be counted at a moment long before its request was sent. Once ``stop``
        is set, the wait for a token ends at once without one: the caller must then
        not send (waiting up to a whole window to cancel would be absurd).
        """
        return _Slot(self, kind, stop)

    async def throttled(self, kind: CallKind, retry_after: float | None) -> float:
        return await self.gate.throttled(kind, retry_after)

    async def paused_for(self) -> float:
        return await self.gate.paused_for()


class _Slot:
    """``Pacer.slot()``: a plain class, as it is entered once per upstream call."""

    __slots__ = ("_kind", "_pacer", "_stop")

    def __init__(self, pacer: Pacer, kind: CallKind, stop: anyio.Event | None) -> None:
        self._pacer = pacer
        self._kind = kind
        self._stop = stop

    async def __aenter__(self) -> None:
        pacer, stop = self._pacer, self._stop
        await pacer._slots.acquire()
        try:
            # The gate may live in another process: asking again after its wait is
            # the only way to learn when a token is free.
            while not (stop and stop.is_set()) and (wait := await pacer.gate.take(self._kind)) > 0:
                if stop is None:
                    await anyio.sleep(wait)
                    continue
                with anyio.move_on_after(wait):
                    await stop.wait()
        except BaseException:
            pacer._slots.release()
            raise

    async def __aexit__(self, *exc_info: object) -> None:
        self._pacer._slots.release()


def _log(limit: RateLimit | None, clock: Callable[[], float]) -> SlidingLog | None:
    if limit is None or limit.count <= 0:
        return None
    return SlidingLog(limit, clock)
