"""What the routes depend on: the running service, its processor, and request preferences."""

from __future__ import annotations

import math
from typing import Annotated

import attrs
from anyio.abc import TaskGroup
from fastapi import Depends, FastAPI
from starlette.requests import HTTPConnection

from hospital_bulk import BulkProcessor

from .errors import ApiError
from .settings import ServiceSettings
from .stopping import STOPPING_DETAIL, Stopping


@attrs.frozen
class Service:
    """What the lifespan builds and owns while the app runs."""

    settings: ServiceSettings
    processor: BulkProcessor
    #: Where jobs run: the lifespan's, never a request's, so a client that hangs up
    #: leaves its job running, and shutdown interrupts every job it holds.
    jobs: TaskGroup
    #: Whether the service is stopping, and its live streams.
    stopping: Stopping


def service_of(app: FastAPI) -> Service:
    """The running service of ``app``; 503 outside its lifespan (starting, stopped)."""
    service: Service | None = getattr(app.state, "hospital_bulk", None)
    if service is None:
        raise ApiError(503, "unavailable", "the service is not running (starting or stopping)")
    return service


def get_service(connection: HTTPConnection) -> Service:
    return service_of(connection.app)


def get_processor(connection: HTTPConnection) -> BulkProcessor:
    return service_of(connection.app).processor


def accepting_jobs(connection: HTTPConnection) -> None:
    """503 with ``Retry-After`` once the service is stopping: no new work is started."""
    stopping = service_of(connection.app).stopping
    if stopping.began:
        headers = {"Retry-After": str(stopping.retry_after)}
        raise ApiError(503, "stopping", STOPPING_DETAIL, headers)


ServiceDep = Annotated[Service, Depends(get_service)]
#: For routes that start jobs: refused while the service stops.
AcceptingJobs = Depends(accepting_jobs)
ProcessorDep = Annotated[BulkProcessor, Depends(get_processor)]


@attrs.frozen
class Preferences:
    """What a ``Prefer`` header (RFC 7240) asks: answer at once, or wait at most so long."""

    respond_async: bool = False
    wait: float | None = None

    def timeout(self, limit: float) -> float:
        return limit if self.wait is None else min(self.wait, limit)


def parse_prefer(header: str | None) -> Preferences:
    """Read ``respond-async`` and ``wait=N``; anything else, or malformed, is ignored
    (RFC 7240: a server ignores the preferences it does not understand)."""
    respond_async, wait = False, None
    for item in (header or "").split(","):
        name, _, value = item.partition(";")[0].partition("=")
        name, value = name.strip().lower(), value.strip().strip('"')
        if name == "respond-async":
            respond_async = True
        elif name == "wait":
            try:
                seconds = float(value)
            except ValueError:
                continue
            if math.isfinite(seconds) and seconds >= 0:
                wait = seconds
    return Preferences(respond_async, wait)
