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
from pydantic import AfterValidator

from hospital_bulk import Job, JobConflictError, JobState, Run, StoreError
from hospital_bulk.csv import delimiter_char, encoding_name

from .deps import AcceptingJobs, Preferences, Service, ServiceDep, parse_prefer
from .errors import responses, store_failed_during_job
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


def _encoding(value: str | None) -> str | None:
    """Python's name of the encoding; a ValueError (a 422 naming the parameter) if none."""
    return None if value is None else encoding_name(value)


def _delimiter(value: str | None) -> str | None:
    return None if value is None else delimiter_char(value)


EncodingParam = Annotated[
    str | None,
    Query(
        description="The file's text encoding, e.g. `cp1252` (Excel's \"CSV\" on Windows) or"
        " `latin-1`. Default: UTF-8, or UTF-16 when the file starts with its byte order"
        " mark. An unknown name is a 422",
        examples=["cp1252"],
    ),
    AfterValidator(_encoding),
]
DelimiterParam = Annotated[
    str | None,
    Query(
        description="The character between values, e.g. `;` or `|` (`tab` for a tab)."
        " Default: `,`, `;` or tab, whichever the first line has most of",
        examples=[";"],
    ),
    AfterValidator(_delimiter),
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
    responses={**_ACCEPTED, **responses(400, 413, 422, 500, 503, invalid_csv=True, upload=True)},
    dependencies=[AcceptingJobs],
)
async def upload(
    request: Request,
    service: ServiceDep,
    file: FileParam,
    mode: ModeParam = None,
    prefer: PreferParam = None,
    encoding: EncodingParam = None,
    delimiter: DelimiterParam = None,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            max_length=255,
            description="Retrying an upload with the same key, the same file and the same"
            " `encoding` and `delimiter` returns the first job; the key with another file"
            " or other options is a 422 (`idempotency_key_reused`)",
        ),
    ] = None,
) -> Response:
    """Validate the file (400 with every finding if it has errors: nothing is created),
    create its hospitals upstream exactly once, activate them, and answer the summary.
    """
    content = await read_upload(file, service.settings.max_upload_bytes)
    # Racing uploads with one key get one job: the store keeps keys unique.
    job = await service.processor.submit(
        content,
        file_name=file.filename,
        idempotency_key=idempotency_key,
        encoding=encoding,
        delimiter=delimiter,
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
async def validate(
    service: ServiceDep,
    file: FileParam,
    encoding: EncodingParam = None,
    delimiter: DelimiterParam = None,
) -> ValidationOut:
    """Every finding of the file, row by row; `valid` says whether an upload would run."""
    content = await read_upload(file, service.settings.max_upload_bytes)
    report = await service.processor.validate(content, encoding=encoding, delimiter=delimiter)
    return ValidationOut.model_validate(report)


@router.post(
    "/hospitals/bulk/{batch_id}/resume",
    summary="Retry the rows that failed and activate what is left",
    response_model=JobSummaryOut,
    response_description="The job has settled again: what happened to each row",
    responses={**_ACCEPTED, **responses(404, 409, 500, 503)},
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
    root = request.scope.get("root_path", "").rstrip("/")
    try:
        if run is not None and not respond_async:
            # A conflict means another process or request moved the job: report its state.
            with (
                anyio.move_on_after(preferences.timeout(service.settings.sync_timeout)),
                suppress(JobConflictError),
            ):
                await run.wait()
        snapshot = await service.processor.get(job.id)
    except StoreError as error:
        summary = run.summary if run is not None else None
        state = summary.state if summary is not None else job.state
        return store_failed_during_job(job.id, state, root, error)
    if snapshot.job.state.is_settled and not respond_async and (run is None or run.done):
        body = JobSummaryOut.model_validate(snapshot.summary()).model_dump(mode="json")
        return JSONResponse(body, headers=headers)
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
