"""The application factory and the lifespan that owns every long-lived object.

Building the app touches nothing outside the process; the lifespan opens the
store, the pooled HTTP client and the processor, recovers jobs a dead process
left running, runs jobs in its task group, and at shutdown interrupts the jobs
still running and closes everything.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from importlib.metadata import PackageNotFoundError, version

import anyio
from anyio.abc import TaskGroup
from fastapi import FastAPI

from hospital_bulk import BulkProcessor, JobConflictError

from . import routes_health, routes_jobs, routes_live, routes_upload
from .deps import Service
from .errors import install_error_handlers
from .lazy import StartsOnFirstUse
from .limits import MULTIPART_SLACK, BodyLimit
from .openapi import install_openapi
from .settings import ServiceSettings, open_processor

log = logging.getLogger(__name__)

_DESCRIPTION = """\
Load hospital CSV files into the Hospital Directory API exactly once, and say what
happened to every row. Keeps the original service's endpoints and answers; adds
asynchronous uploads, cancellation, results as CSV, Server-Sent Events and health
checks. Errors all answer `{"detail": "...", "code": "..."}`.

The WebSocket `/ws/progress/{batch_id}` (not listed below: OpenAPI has no words for
it) sends a `snapshot` message, then one `event` message per change, and closes
with 1000 once the job has settled; `?after=N` replays what followed sequence N.
"""


def create_app(
    settings: ServiceSettings | None = None, *, processor: BulkProcessor | None = None
) -> FastAPI:
    """The service. ``settings`` default to the environment's.

    Pass ``processor`` (one on ``hospital_bulk.testing.FakeDirectory``, say) to use it
    instead of building one from ``settings``; it is used as is and not closed here.
    """
    settings = settings if settings is not None else ServiceSettings()
    app = FastAPI(
        title="Hospital Bulk Processor",
        version=_version(),
        description=_DESCRIPTION,
        lifespan=_lifespan,
        # operationIds are the view functions' names: links in the document refer to them.
        generate_unique_id_function=lambda route: route.name,
    )
    app.state.settings = settings
    app.state.injected_processor = processor
    app.state.hospital_bulk = None
    app.add_middleware(BodyLimit, max_bytes=settings.max_upload_bytes + MULTIPART_SLACK)
    # Outermost: without a lifespan (a bare TestClient), the service starts on first use.
    app.add_middleware(
        StartsOnFirstUse,
        lifespan=lambda: _lifespan(app),
        running=lambda: app.state.hospital_bulk is not None,
    )
    install_error_handlers(app)
    install_openapi(app)
    app.include_router(routes_upload.router)
    app.include_router(routes_jobs.router)
    app.include_router(routes_live.router)
    app.include_router(routes_health.router)
    return app


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: ServiceSettings = app.state.settings
    async with AsyncExitStack() as stack:
        processor: BulkProcessor | None = app.state.injected_processor
        if processor is None:
            processor = await open_processor(settings, stack)
        async with anyio.create_task_group() as group:
            await _recover(processor, group, take_over=settings.takes_over)
            group.start_soon(
                _recover_periodically, processor, group, settings.takes_over, name="recover"
            )
            app.state.hospital_bulk = Service(settings, processor, group)
            try:
                yield
            finally:
                app.state.hospital_bulk = None
                # The processor records every job it was running as interrupted.
                group.cancel_scope.cancel()


async def _recover(processor: BulkProcessor, jobs: TaskGroup, *, take_over: bool) -> None:
    """Declare the jobs of dead processes interrupted; with ``take_over``, resume them here."""
    for job in await processor.recover():
        if not take_over:
            log.warning("job %s of a dead process is now interrupted", job.id)
            continue
        log.warning("taking over job %s from a dead process", job.id)
        try:
            await processor.start(job.id, jobs)
        except JobConflictError:
            log.info("job %s was taken over by another process first", job.id)


async def _recover_periodically(processor: BulkProcessor, jobs: TaskGroup, take_over: bool) -> None:
    """With a shared store, another process may die any time: recover its jobs once its
    lease has expired, as start-up does."""
    while True:
        await anyio.sleep(processor.settings.lease_ttl)
        try:
            await _recover(processor, jobs, take_over=take_over)
        except Exception:  # a store hiccup must not stop the service; the next round retries
            log.exception("recovering interrupted jobs failed")


def _version() -> str:
    try:
        return version("hospital-bulk")
    except PackageNotFoundError:  # run from a source tree without installing
        return "0.0.0"
