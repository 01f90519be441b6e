"""The application factory and the lifespan that owns every long-lived object.

Building the app touches nothing outside the process; the lifespan opens the
store, the pooled HTTP client and the processor, recovers jobs a dead process
left running (and, unless told not to, starts the jobs nobody runs), runs jobs in
its task group, and at shutdown stops them (``stopping.py``) and closes everything.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from importlib.metadata import PackageNotFoundError, version

import anyio
from anyio.abc import TaskGroup
from fastapi import FastAPI

from hospital_bulk import BulkProcessor, JobConflictError, StoreError

from . import routes_health, routes_jobs, routes_live, routes_upload
from .deps import Service
from .errors import install_error_handlers
from .lazy import StartsOnFirstUse
from .limits import MULTIPART_SLACK, BodyLimit
from .openapi import install_openapi
from .settings import ServiceSettings, open_processor
from .stopping import Stopping

log = logging.getLogger(__name__)

_DESCRIPTION = """\
Load hospital CSV files into the Hospital Directory API exactly once, and say what
happened to every row. Keeps the original service's endpoints and answers; adds
asynchronous uploads, cancellation, results as CSV, Server-Sent Events and health
checks. Errors all answer `{"detail": "...", "code": "..."}`.

The WebSocket `/ws/progress/{batch_id}` (not listed below: OpenAPI has no words for
it) sends a `snapshot` message, then one `event` message per change, and closes
with 1000 once the job has settled; `?after=N` replays what followed sequence N.
When the service shuts down, it sends `service.stopping` (with the last `seq` sent)
and closes with 1001; the event stream ends with the same message. Uploads and
resumes are then refused with 503 `stopping` and `Retry-After`.
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
        stopping = Stopping(settings.graceful_timeout)
        async with anyio.create_task_group() as group:
            if settings.resume_on_start:
                await _adopt(processor, group)
            else:
                await _recover(processor, group, stopping, take_over=settings.takes_over)
            group.start_soon(
                _recover_periodically,
                processor,
                group,
                stopping,
                settings.takes_over,
                name="recover",
            )
            runs_stopped = anyio.Event()
            group.start_soon(_interrupt_when_stopping, processor, stopping, runs_stopped)
            app.state.hospital_bulk = Service(settings, processor, group, stopping)
            try:
                yield
            finally:
                # Under a server that said nothing before (not `hospital-bulk serve`), the
                # stop starts here: the same grace for the creates in flight.
                try:
                    stopping.begin()
                    await runs_stopped.wait()
                finally:
                    app.state.hospital_bulk = None
                    group.cancel_scope.cancel()


async def _interrupt_when_stopping(
    processor: BulkProcessor, stopping: Stopping, done: anyio.Event
) -> None:
    """Once stopping began: no new creates, the grace for those in flight, and every job
    still running left interrupted, for the next start to resume."""
    await stopping.requested.wait()
    try:
        runs = await processor.interrupt_runs(grace=stopping.grace)
    except Exception:  # the lifespan's end cancels whatever is left: jobs end interrupted
        log.exception("stopping the running jobs failed")
    else:
        for run in runs:
            state = run.summary.state if run.summary is not None else "unknown"
            log.warning("stopping: job %s is now %s", run.job_id, state)
    finally:
        done.set()


async def _adopt(processor: BulkProcessor, jobs: TaskGroup) -> None:
    """Start the jobs nobody runs: interrupted ones, and pending ones of a dead process."""
    try:
        runs = await processor.adopt_orphans(jobs)
    except StoreError:
        # The service still starts: /readyz says what the store says, and a resume or
        # the next start picks the jobs up.
        log.exception("resuming the jobs left unfinished failed")
        return
    for run in runs:
        log.warning("resuming job %s, left unfinished by a stop or a dead process", run.job_id)


async def _recover(
    processor: BulkProcessor, jobs: TaskGroup, stopping: Stopping, *, take_over: bool
) -> None:
    """Declare the jobs of dead processes interrupted; with ``take_over``, resume them here."""
    for job in await processor.recover():
        if not take_over or stopping.began:
            log.warning("job %s of a dead process is now interrupted", job.id)
            continue
        log.warning("taking over job %s from a dead process", job.id)
        try:
            await processor.start(job.id, jobs)
        except JobConflictError:
            log.info("job %s was taken over by another process first", job.id)


async def _recover_periodically(
    processor: BulkProcessor, jobs: TaskGroup, stopping: Stopping, take_over: bool
) -> None:
    """With a shared store, another process may die any time: recover its jobs once its
    lease has expired, as start-up does."""
    while not stopping.began:
        await anyio.sleep(processor.settings.lease_ttl)
        try:
            await _recover(processor, jobs, stopping, take_over=take_over)
        except Exception:  # a store hiccup must not stop the service; the next round retries
            log.exception("recovering interrupted jobs failed")


def _version() -> str:
    try:
        return version("hospital-bulk")
    except PackageNotFoundError:  # run from a source tree without installing
        return "0.0.0"
