"""Upstream calls: pacing, retries with backoff, 429 pauses and outages.

One :class:`UpstreamCalls` per processor serves every run, reconciliation and
delete, so that all of them share one concurrency limit, one rate gate, one
account of whether the upstream is throttling us and one of whether it is there
at all.

An outage: after ``RetryPolicy.outage_after`` consecutive calls failed for want of
a directory (refused, timed out, 5xx), calls stop going out. One waiter at a time
probes (``DirectoryClient.ping``) with backoff; the first answer ends the outage
and every waiter goes on. A call that waited ``outage_deadline`` seconds raises
:class:`DirectoryUnavailableError`, so its job can stop, resumable, instead of
failing rows that were never refused.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

import anyio
import attrs
import stamina

from ._client import DirectoryClient
from ._pacing import CallKind, LocalRateGate, Pacer, RateGate, full_jitter
from ._settings import ProcessorSettings, RetryPolicy
from ._store import JobStore
from .exceptions import (
    DirectoryError,
    DirectoryUnavailableError,
    MaybeLandedError,
    NotSentError,
    ThrottledError,
    UnreadableAnswerError,
)

T = TypeVar("T")
log = logging.getLogger("hospital_bulk")


def rate_gate_for(settings: ProcessorSettings, store: JobStore, given: RateGate | None) -> RateGate:
    """The gate given, else the store's shared one, else one in this processor."""
    if given is not None:
        return given
    limits = (settings.create_limit, settings.other_limit, settings.unpaced_throttle_pause)
    shared = store.rate_gate(*limits)
    if shared is not None:
        return shared
    return LocalRateGate(create_limit=limits[0], other_limit=limits[1], unpaced_pause=limits[2])


class StopRequestedError(Exception):
    """A create was not sent because its run was asked to stop."""


def is_outage(error: DirectoryError) -> bool:
    """Whether ``error`` says the directory is not there (rather than saying no)."""
    if isinstance(error, NotSentError):
        return True
    if isinstance(error, MaybeLandedError) and not isinstance(error, UnreadableAnswerError):
        return error.status is None or error.status >= 500
    return False


def describe(error: DirectoryError) -> str:
    """The error as an operator reads it: with its HTTP status, if it had one."""
    return f"HTTP {error.status}: {error.message}" if error.status else error.message


class Outage:
    """Whether the directory is answering, as every call of one processor sees it."""

    def __init__(self) -> None:
        self.failures = 0  # consecutive outage failures
        self.error: DirectoryError | None = None  # set while the directory is unavailable
        self.over = anyio.Event()
        self.probing = anyio.Lock()
        self.probes = 0
        #: Set (then replaced) whenever a probe ends: the waiters look again.
        self.turn = anyio.Event()

    def pass_turn(self) -> None:
        ended, self.turn = self.turn, anyio.Event()
        ended.set()

    @property
    def active(self) -> bool:
        return self.error is not None


@attrs.define
class _Waits:
    """One call's account of its outages, across its attempts: when it gives up
    waiting, and how many sends the outage refused that it made again for free."""

    deadline: float | None = None
    free_resends: int = 0


class UpstreamCalls:
    """Send calls to the directory through the pacer, retrying what provably did not land.

    ``on_throttle(delay)`` hears when a 429 pauses every caller (``delay`` seconds)
    and when the pause is over (``0``); ``on_outage(error, delay)`` when the
    directory is unavailable (``error``, next probe in ``delay`` seconds) and when
    it answers again (``None``).
    """

    def __init__(
        self,
        client: DirectoryClient,
        pacer: Pacer,
        policy: RetryPolicy,
        on_throttle: Callable[[float], Awaitable[None]],
        on_outage: Callable[[DirectoryError | None, float], Awaitable[None]] | None = None,
    ) -> None:
        self.client = client
        self.pacer = pacer
        self.policy = policy
        self._on_throttle = on_throttle
        self._on_outage = on_outage
        self._throttled = False
        self.outage = Outage()

    async def call(
        self,
        kind: CallKind,
        send: Callable[[], Awaitable[T]],
        *,
        idempotent: bool = False,
        stop: anyio.Event | None = None,
    ) -> T:
        """Send, retrying failures that prove nothing landed (not sent, throttled).

        An idempotent call (a listing, a delete) is retried after a maybe-landed
        failure too, but for an answer it could not read; a create or an activation
        never is. Once ``stop`` is set, a create still waiting for its turn raises
        :class:`StopRequestedError` unsent. While the directory is unavailable the
        call waits for it (see the module's docstring), and one refused then is sent
        again once it answers without using up an attempt.
        """
        waits = _Waits()
        retry_on: tuple[type[DirectoryError], ...] = (NotSentError, ThrottledError)
        if idempotent:
            retry_on = (*retry_on, MaybeLandedError)
        try:
            # Most calls succeed at once: only a failure pays for setting up retries.
            return await self._send_once(kind, send, stop, waits)
        except retry_on as error:
            if isinstance(error, UnreadableAnswerError):
                raise
            await anyio.sleep(self._backoff(1))
        attempt = 1

        def backoff(error: Exception) -> bool | float:
            nonlocal attempt
            if not isinstance(error, retry_on) or isinstance(error, UnreadableAnswerError):
                return False
            attempt += 1
            return self._backoff(attempt)

        # The first attempt above counts as one.
        async for retry in stamina.retry_context(
            on=backoff, attempts=max(1, self.policy.attempts - 1), timeout=self.policy.timeout
        ):
            with retry:
                return await self._send_once(kind, send, stop, waits)
        raise AssertionError("unreachable: stamina re-raises the last error")  # pragma: no cover

    def _backoff(self, attempt: int) -> float:
        policy = self.policy
        return full_jitter(attempt, initial=policy.backoff_initial, maximum=policy.backoff_max)

    async def _send_once(
        self,
        kind: CallKind,
        send: Callable[[], Awaitable[T]],
        stop: anyio.Event | None,
        waits: _Waits,
    ) -> T:
        # Only a create gives up its turn at the pacer when its run stops; any call
        # stops waiting for an unavailable directory.
        pace_stop = stop if kind is CallKind.CREATE else None
        while True:
            if self.outage.active:
                if waits.deadline is None:
                    waits.deadline = anyio.current_time() + self.policy.outage_deadline
                await self._wait_for_directory(stop, waits.deadline)
            try:
                result = await self._paced(kind, send, pace_stop)
            except DirectoryError as error:
                if not is_outage(error):
                    self.outage.failures = 0
                    raise
                await self._failed(error)
                if (
                    self.outage.active
                    and isinstance(error, NotSentError)
                    and waits.free_resends < self.policy.attempts
                ):
                    # Surely not sent: again once the directory answers, without using
                    # an attempt (a few times: a directory that answers pings but
                    # refuses this call must not be hammered).
                    waits.free_resends += 1
                    continue
                raise
            self.outage.failures = 0
            return result

    async def _failed(self, error: DirectoryError) -> None:
        outage = self.outage
        outage.failures += 1
        if outage.active or outage.failures < self.policy.outage_after:
            return
        outage.error, outage.over, outage.probes = error, anyio.Event(), 0
        delay = self._probe_delay(0)
        log.warning("directory unavailable (%s); next try in %.1f s", describe(error), delay)
        await self._announce(error, delay)

    async def _announce(self, error: DirectoryError | None, delay: float) -> None:
        """Tell every run, whatever becomes of the call that noticed: shielded, so that
        a cancelled caller cannot leave some runs thinking the directory is away. A
        notice overtaken by a newer one (the outage ended, or began again) is dropped."""
        if self._on_outage is not None and (error is not None) == self.outage.active:
            with anyio.CancelScope(shield=True):
                await self._on_outage(error, delay)

    def _probe_delay(self, probes: int) -> float:
        return min(self.policy.probe_max, self.policy.backoff_initial * 2.0**probes)

    async def _wait_for_directory(self, stop: anyio.Event | None, deadline: float) -> None:
        """Return once the directory answers; raise :class:`DirectoryUnavailableError`
        at ``deadline`` (event-loop time), or :class:`StopRequestedError` once ``stop``
        is set. One waiter at a time probes; when it leaves without an answer (its run
        stopped, its deadline came), the next one takes over."""
        outage = self.outage
        # move_on_after, not move_on_at: the latter is newer than our anyio floor.
        with anyio.move_on_after(deadline - anyio.current_time()):
            while outage.active:
                if stop is not None and stop.is_set():
                    raise StopRequestedError
                if outage.probing.locked():
                    await _first(outage.turn, stop)
                    continue
                async with outage.probing:
                    try:
                        if outage.active:
                            await self._probe(stop)
                    finally:
                        outage.pass_turn()
            return
        error = outage.error
        raise DirectoryUnavailableError(
            f"the directory did not answer for {self.policy.outage_deadline:.0f} s"
            + (f": {describe(error)}" if error is not None else ""),
        )

    async def _probe(self, stop: anyio.Event | None) -> None:
        outage = self.outage
        with anyio.move_on_after(self._probe_delay(outage.probes)):
            await _first(anyio.Event(), stop)  # a sleep that a stop ends
        if stop is not None and stop.is_set():
            return
        try:
            await self._paced(CallKind.OTHER, self.client.ping, None)
        except DirectoryError as error:
            if is_outage(error):
                outage.probes += 1
                outage.error = error
                delay = self._probe_delay(outage.probes)
                log.warning(
                    "directory still unavailable (%s); next try in %.1f s", describe(error), delay
                )
                await self._announce(error, delay)
                return
        # Any answer, even a refusal, says the directory is there.
        outage.error, outage.failures = None, 0
        outage.over.set()
        log.info("directory available again")
        await self._announce(None, 0.0)

    async def _paced(
        self, kind: CallKind, send: Callable[[], Awaitable[T]], stop: anyio.Event | None
    ) -> T:
        async with self.pacer.slot(kind, stop):
            if stop is not None and stop.is_set():
                raise StopRequestedError
            try:
                result = await send()
            except ThrottledError as error:
                delay = await self.pacer.throttled(kind, error.retry_after)
                self._throttled = True
                await self._on_throttle(delay)
                raise
        if self._throttled and await self.pacer.paused_for() <= 0:
            self._throttled = False
            await self._on_throttle(0.0)
        return result


async def _first(event: anyio.Event, stop: anyio.Event | None) -> None:
    """Wait until ``event`` or ``stop`` is set."""
    async with anyio.create_task_group() as group:

        async def stopped() -> None:
            assert stop is not None
            await stop.wait()
            group.cancel_scope.cancel()

        if stop is not None:
            group.start_soon(stopped)
        await event.wait()
        group.cancel_scope.cancel()
