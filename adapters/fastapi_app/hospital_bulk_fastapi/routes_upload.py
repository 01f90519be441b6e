"""Routes that run jobs: upload, validate, resume.

Uploads and resumes answer like the original service — wait, then 200 with the
summary — unless the client prefers not to wait (``Prefer: respond-async`` or
``?mode=async``) or the job outlasts the wait: then 202 with ``Location``. Either
way the job runs in the service's task group, not in the request.
"""

from __future__ import annotations

from contextlib import suppress
from typing import Annotated, Any, Literal
from urllib.parse import quote

import anyio
from fastapi import APIRouter, File, Header, Query, Request, UploadFile
from fastapi.responses import JSONResponse, Response

from hospital_bulk import Job, JobConflictError, JobState, Run

from .deps import AcceptingJobs, Preferences, Service, ServiceDep, parse_prefer
from .errors import responses
from .limits import read_upload
from .schemas import AcceptedOut, JobSummaryOut, ProgressOut, ValidationOut

router = APIRouter(tags=["bulk"])

FileParam = Annotated[
    UploadFile,
    File(
        description="The CSV file: name, address, phone (phone optional, header optional)",
        examples=["name,address,phone\nGeneral Hospital,1 Main Street,555-0100\n"],
    ),
]
ModeParam = Annotated[
    Literal["sync", "async"] | None,
    Query(description="`async` answers 202 at once; `sync` waits (the default)"),
]
PreferParam = Annotated[
    str | None,
    Header(
        alias="Prefer",
        description="RFC 7240: `respond-async` answers 202 at once; `wait=N` waits at most "
        "N seconds (capped by HOSPITAL_BULK_SYNC_TIMEOUT) before answering 202",
        examples=["respond-async", "wait=10"],
    ),
]
#: Where a job's batch_id leads: OpenAPI links, so tools (and readers) can follow them.
_LINKS = {
    operation: {
        "operationId": operation,
        "parameters": {"batch_id": "$response.body#/batch_id"},
    }
    for operation in ("status", "resume", "cancel", "delete", "results_csv", "events")
}
_ACCEPTED: dict[int | str, dict[str, Any]] = {
    200: {"links": _LINKS},
    202: {
        "model": AcceptedOut,
        "description": "The job goes on in the background; follow it at `Location`",
        "headers": {
            "Location": {
                "description": "The status URL, `/bulk/status/{batch_id}`",
                "schema": {"type": "string"},
            }
        },
        "links": _LINKS,
    },
}


@router.post(
    "/hospitals/bulk",
    summary="Upload a CSV file: create every hospital, activate the batch",
    response_model=JobSummaryOut,
    response_description="The job has settled: what happened to each row",
    responses={**_ACCEPTED, **responses(400, 413, 422, 503, invalid_csv=True)},
    dependencies=[AcceptingJobs],
)
async def upload(
    request: Request,
    service: ServiceDep,
    file: FileParam,
    mode: ModeParam = None,
    prefer: PreferParam = None,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            max_length=255,
            description="Retrying an upload with the same key returns the first job",
        ),
    ] = None,
) -> Response:
    """Validate the file (400 with every finding if it has errors: nothing is created),
    create its hospitals upstream exactly once, activate them, and answer the summary.
    """
    content = await read_upload(file, service.settings.max_upload_bytes)
    # Racing uploads with one key get one job: the store keeps keys unique.
    job = await service.processor.submit(
        content, file_name=file.filename, idempotency_key=idempotency_key
    )
    run = service.processor.run_of(job.id)
    if run is None and job.state is JobState.PENDING:
        try:
            run = await service.processor.start(job.id, service.jobs)
        except JobConflictError:
            # A retry with this Idempotency-Key started it first: answer as it goes.
            run = service.processor.run_of(job.id)
    return await _answer(request, service, job, run, prefer, mode)


@router.post(
    "/hospitals/bulk/validate",
    summary="Check a CSV file without creating anything",
    response_model=ValidationOut,
    responses=responses(400, 413, 422, 503),
)
async def validate(service: ServiceDep, file: FileParam) -> ValidationOut:
    """Every finding of the file, row by row; `valid` says whether an upload would run."""
    content = await read_upload(file, service.settings.max_upload_bytes)
    return ValidationOut.model_validate(await service.processor.validate(content))


@router.post(
    "/hospitals/bulk/{batch_id}/resume",
    summary="Retry the rows that failed and activate what is left",
    response_model=JobSummaryOut,
    response_description="The job has settled again: what happened to each row",
    responses={**_ACCEPTED, **responses(404, 409, 503)},
    dependencies=[AcceptingJobs],
)
async def resume(
    request: Request,
    service: ServiceDep,
    batch_id: str,
    mode: ModeParam = None,
    prefer: PreferParam = None,
) -> Response:
    """Only failed and unknown rows are sent again (unknown ones after listing the batch
    upstream); batches not yet activated are activated; a job accepted but never
    started runs now. 409 while the job runs, or when nothing is left to do."""
    run = await service.processor.start(batch_id, service.jobs)
    job = await service.processor.get_job(batch_id)
    return await _answer(request, service, job, run, prefer, mode)


async def _answer(
    request: Request,
    service: Service,
    job: Job,
    run: Run | None,
    prefer: str | None,
    mode: str | None,
) -> Response:
    """200 with the summary once the job settled within the wait; 202 otherwise."""
    preferences = parse_prefer(prefer)
    respond_async = preferences.respond_async if mode is None else mode == "async"
    headers = _applied(preferences, respond_async)
    if run is not None and not respond_async:
        # A conflict means another process or request moved the job: report its state.
        with (
            anyio.move_on_after(preferences.timeout(service.settings.sync_timeout)),
            suppress(JobConflictError),
        ):
            await run.wait()
    snapshot = await service.processor.get(job.id)
    if snapshot.job.state.is_settled and not respond_async and (run is None or run.done):
        body = JobSummaryOut.model_validate(snapshot.summary()).model_dump(mode="json")
        return JSONResponse(body, headers=headers)
    root = request.scope.get("root_path", "").rstrip("/")
    job_path = quote(job.id, safe="")
    accepted = AcceptedOut(
        batch_id=job.id,
        state=snapshot.job.state,
        progress=ProgressOut.model_validate(snapshot.job.progress),
        status_url=f"{root}/bulk/status/{job_path}",
        events_url=f"{root}/hospitals/bulk/{job_path}/events",
        websocket_url=f"{root}/ws/progress/{job_path}",
        detail="the job goes on in the background; poll status_url or follow the events",
    )
    headers["Location"] = accepted.status_url
    return JSONResponse(accepted.model_dump(mode="json"), 202, headers=headers)


def _applied(preferences: Preferences, respond_async: bool) -> dict[str, str]:
    applied = []
    if respond_async and preferences.respond_async:
        applied.append("respond-async")
    elif preferences.wait is not None:
        applied.append(f"wait={preferences.wait:g}")
    return {"Preference-Applied": ", ".join(applied)} if applied else {}
