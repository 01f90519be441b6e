"""Stopping the service: what a shutdown tells the routes, and how long it waits for them.

A server ends the lifespan only once every connection is closed, and a live stream
never closes by itself while its job runs: so stopping starts earlier, when the
server is asked to shut down (``hospital-bulk serve`` calls :func:`begin_shutdown`
then; the lifespan's end does it otherwise). From then on uploads and resumes are
refused (503 with ``Retry-After``), every live stream sends a closing message and
ends, and the running jobs are interrupted: no new creates, those in flight get the
grace, and the jobs are left ``interrupted`` for the next start to resume.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import anyio
from fastapi import FastAPI

#: What the closing message of a live stream and a refused upload say.
STOPPING_DETAIL = "the service is shutting down; retry once it is back"


class Stopping:
    """The service's shutdown as its routes see it: whether it began, and the live
    streams still open."""

    def __init__(self, grace: float) -> None:
        #: Seconds the creates in flight get to finish once stopping began.
        self.grace = grace
        #: Set once stopping began.
        self.requested = anyio.Event()
        self._streams = 0
        self._streams_ended = anyio.Event()

    @property
    def began(self) -> bool:
        return self.requested.is_set()

    def begin(self) -> None:
        """Start stopping (again is fine): live streams close, uploads are refused."""
        self.requested.set()
        if self._streams == 0:
            self._streams_ended.set()

    @contextmanager
    def stream(self) -> Iterator[None]:
        """Count a live stream as open while the block runs."""
        self._streams += 1
        try:
            yield
        finally:
            self._streams -= 1
            if self._streams == 0 and self.began:
                self._streams_ended.set()

    async def streams_ended(self) -> None:
        """Return once stopping began and every live stream has ended."""
        await self._streams_ended.wait()

    @property
    def retry_after(self) -> int:
        """What ``Retry-After`` says to clients refused while stopping: about the time
        the stop takes, and a restart after it."""
        return max(1, math.ceil(self.grace)) + 5


async def begin_shutdown(app: FastAPI, *, linger: float = 5.0) -> None:
    """Start stopping the service ``app`` (see the module's docstring), and return once
    every live stream has sent its closing message and ended, at most ``linger``
    seconds later. Nothing to do if the service is not running.

    Call it when the server is asked to stop, before it closes connections: a
    uvicorn ``Server.shutdown`` does (``hospital-bulk serve``).
    """
    service = getattr(app.state, "hospital_bulk", None)
    if service is None:
        return
    service.stopping.begin()
    with anyio.move_on_after(linger):
        await service.stopping.streams_ended()
