"""Pacing: how fast the processor may call the upstream, shared by every job.

One concurrency limit and two rate limits — creates, and every other call — each
a fixed window like the upstream's own limiter. A 429 pauses everyone, because the
quota it reports is shared; pacing to the known limit means steady state needs
no 429 at all.
"""

from __future__ import annotations

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
    """Slack added after each window, so a request sent at the very start of our next
    window cannot reach the upstream before its own window has closed: it must exceed
    how much the time from taking a token to arriving upstream varies (measured: up to
    ~0.1 s on loopback under load; a new TLS connection adds more, hence up to 1 s)."""
    return min(1.0, 0.04 * window)


def full_jitter(attempt: int, *, initial: float, maximum: float) -> float:
    """Exponential backoff with full jitter: uniform in [0, min(maximum, initial * 2**attempt)]."""
    return random.uniform(0.0, min(maximum, initial * 2.0**attempt))


class FixedWindow:
    """At most ``limit.count`` takes per window; a window opens at the first take after
    the previous one closed (plus a margin)."""

    def __init__(self, limit: RateLimit, clock: Callable[[], float]) -> None:
        self.limit = limit
        self._clock = clock
        self._margin = window_margin(limit.window)
        self._opened_at: float | None = None
        self._used = 0
        self._not_before = float("-inf")

    def try_take(self) -> float:
        """Take one slot and return 0, or return how long to wait before asking again."""
        now = self._clock()
        if now < self._not_before:
            return self._not_before - now
        if self._opened_at is None or now >= self._closes_at():
            self._opened_at, self._used = now, 0
        if self._used < self.limit.count:
            self._used += 1
            return 0.0
        return self._closes_at() - now

    def remaining(self) -> float:
        """Seconds until the current window closes (0 when none is open)."""
        if self._opened_at is None:
            return 0.0
        return max(0.0, self._closes_at() - self._clock())

    def restart_after(self, moment: float) -> None:
        """Forget the current window; the next one opens no earlier than ``moment``."""
        self._opened_at, self._used = None, 0
        self._not_before = max(self._not_before, moment)

    def _closes_at(self) -> float:
        assert self._opened_at is not None
        return self._opened_at + self.limit.window + self._margin


class RateGate(Protocol):
    """Rate accounting shared by everyone who calls the same upstream.

    :class:`LocalRateGate` serves one process; a store shared by several processes
    can offer one that all of them consult (see ``RedisStore.rate_gate``).
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
    """Fixed windows and a shared pause, in this process's memory."""

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
        self._windows = {
            CallKind.CREATE: _window(create_limit, clock),
            CallKind.OTHER: _window(other_limit, clock),
        }
        self._paused_until = 0.0

    async def take(self, kind: CallKind) -> float:
        wait = await self.paused_for()
        window = self._windows[kind]
        if wait <= 0 and window is not None:
            wait = window.try_take()
        return wait

    async def throttled(self, kind: CallKind, retry_after: float | None) -> float:
        """Without Retry-After, wait for our current window to close, or a whole
        window when none is open: the upstream's window is somewhere in there.
        Unpaced, we know no window: wait ``unpaced_pause``.
        """
        window = self._windows[kind]
        if retry_after is not None:
            delay = retry_after
        elif window is None:
            delay = self._unpaced_pause
        else:
            delay = window.remaining() or window.limit.window
        self._paused_until = max(self._paused_until, self._clock() + delay)
        if window is not None:
            window.restart_after(self._paused_until)
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
        could be spent in a later window than the one it counted in. Once ``stop``
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


def _window(limit: RateLimit | None, clock: Callable[[], float]) -> FixedWindow | None:
    if limit is None or limit.count <= 0:
        return None
    return FixedWindow(limit, clock)
