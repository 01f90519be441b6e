"""Upstream calls: pacing, retries with backoff, and the notice that a 429 paused us.

One :class:`UpstreamCalls` per processor serves every run, reconciliation and
delete, so that all of them share one concurrency limit, one rate gate and one
account of whether the upstream is throttling us.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import anyio
import stamina

from ._client import DirectoryClient
from ._pacing import CallKind, Pacer, full_jitter
from ._settings import RetryPolicy
from .exceptions import (
    DirectoryError,
    MaybeLandedError,
    NotSentError,
    ThrottledError,
    UnreadableAnswerError,
)

T = TypeVar("T")


class StopRequestedError(Exception):
    """A create was not sent because its run was asked to stop."""


class UpstreamCalls:
    """Send calls to the directory through the pacer, retrying what provably did not land.

    ``on_throttle(delay)`` hears when a 429 pauses every caller (``delay`` seconds)
    and when the pause is over (``0``).
    """

    def __init__(
        self,
        client: DirectoryClient,
        pacer: Pacer,
        policy: RetryPolicy,
        on_throttle: Callable[[float], Awaitable[None]],
    ) -> None:
        self.client = client
        self.pacer = pacer
        self.policy = policy
        self._on_throttle = on_throttle
        self._throttled = False

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
        never is. Once ``stop`` is set, a
        create still waiting for its turn raises :class:`StopRequestedError` unsent.
        """
        retry_on: tuple[type[DirectoryError], ...] = (NotSentError, ThrottledError)
        if idempotent:
            retry_on = (*retry_on, MaybeLandedError)
        try:
            # Most calls succeed at once: only a failure pays for setting up retries.
            return await self._send_once(kind, send, stop)
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
                return await self._send_once(kind, send, stop)
        raise AssertionError("unreachable: stamina re-raises the last error")  # pragma: no cover

    def _backoff(self, attempt: int) -> float:
        policy = self.policy
        return full_jitter(attempt, initial=policy.backoff_initial, maximum=policy.backoff_max)

    async def _send_once(
        self, kind: CallKind, send: Callable[[], Awaitable[T]], stop: anyio.Event | None
    ) -> T:
        stop = stop if kind is CallKind.CREATE else None
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
