"""Routes that read and manage jobs: status, list, cancel, delete, results as CSV."""

from __future__ import annotations

import hashlib
from typing import Annotated

from fastapi import APIRouter, Header, Query
from fastapi.responses import JSONResponse, Response

from hospital_bulk import Job, RowStatus, reimport_csv, reimportable_rows
from hospital_bulk import results_csv as every_row_csv  # the route has the name

from .convert import status_out
from .deps import ProcessorDep
from .errors import responses
from .schemas import JobListOut, JobOut, JobStatusOut

router = APIRouter(tags=["bulk"])

_STATUS_HEADERS = {"Cache-Control": "no-cache"}


@router.get(
    "/bulk/status/{batch_id}",
    summary="A job's state, counters and every row",
    response_model=JobStatusOut,
    responses={
        200: {"headers": {"ETag": {"description": "Changes with every event", "schema": {}}}},
        304: {"description": "Unchanged since the `If-None-Match` ETag"},
        **responses(404, 503),
    },
)
async def status(
    processor: ProcessorDep,
    batch_id: str,
    if_none_match: Annotated[
        str | None,
        Header(alias="If-None-Match", description="An ETag of an earlier answer: 304 if unchanged"),
    ] = None,
) -> Response:
    """Poll cheaply: send the last `ETag` back as `If-None-Match` to get a 304 until
    something changes."""
    job = await processor.get_job(batch_id)
    if if_none_match is not None and _matches(if_none_match, etag(job)):
        return Response(status_code=304, headers={"ETag": etag(job), **_STATUS_HEADERS})
    snapshot = await processor.get(batch_id)
    body = status_out(snapshot).model_dump(mode="json")
    return JSONResponse(body, headers={"ETag": etag(snapshot.job), **_STATUS_HEADERS})


@router.get(
    "/hospitals/bulk",
    summary="Jobs, newest first",
    response_model=JobListOut,
    responses=responses(422, 503),
)
async def list_jobs(
    processor: ProcessorDep,
    limit: Annotated[int, Query(ge=1, le=500, description="Jobs per page")] = 50,
    offset: Annotated[int, Query(ge=0, le=2**31, description="Jobs to skip")] = 0,
) -> JobListOut:
    jobs = await processor.list_jobs(limit=limit + 1, offset=offset)
    return JobListOut(
        jobs=[JobOut.model_validate(job) for job in jobs[:limit]],
        limit=limit,
        offset=offset,
        next_offset=offset + limit if len(jobs) > limit else None,
    )


@router.post(
    "/hospitals/bulk/{batch_id}/cancel",
    summary="Stop sending creates; the job stays resumable",
    response_model=JobStatusOut,
    responses={
        202: {"model": JobStatusOut, "description": "Stopping: creates in flight finish first"},
        **responses(404, 409, 503),
    },
)
async def cancel(processor: ProcessorDep, batch_id: str) -> Response:
    """200 once the job is cancelled; 202 while its creates in flight finish (it then ends
    `cancelled`). 409 for a job that has already finished."""
    job = await processor.cancel(batch_id)
    body = status_out(await processor.get(batch_id)).model_dump(mode="json")
    return JSONResponse(body, 202 if job.state.is_active else 200)


@router.delete(
    "/hospitals/bulk/{batch_id}",
    summary="Delete the batch's hospitals upstream",
    response_model=JobStatusOut,
    responses=responses(404, 409, 502, 503),
)
async def delete(processor: ProcessorDep, batch_id: str) -> JobStatusOut:
    """Every upstream batch of the job is deleted; the job stays readable, `deleted`.
    409 while it runs. Deleting again re-sends the upstream deletes."""
    await processor.delete(batch_id)
    return status_out(await processor.get(batch_id))


_CSV_EXAMPLE = (
    "row,line,name,address,phone,status,state,hospital_id,creation_batch_id,error_code,error\r\n"
    "1,2,General Hospital,1 Main St,555-0100,created_and_activated,activated,101,"
    "1b4e28ba-2fa1-4d3b-a3f5-ef19b5a7633b,,\r\n"
)


@router.get(
    "/hospitals/bulk/{batch_id}/results.csv",
    summary="Every row with its outcome, as CSV",
    response_class=Response,
    responses={
        200: {
            "description": "The rows, as CSV (an attachment)",
            "content": {"text/csv": {"schema": {"type": "string"}, "example": _CSV_EXAMPLE}},
        },
        **responses(404, 422, 503),
    },
)
async def results_csv(
    processor: ProcessorDep,
    batch_id: str,
    status: Annotated[
        RowStatus | None,
        Query(
            description="Only rows with this status. `failed` gives the columns name, "
            "address, phone of the rows provably not created: fix them, upload the file."
        ),
    ] = None,
) -> Response:
    snapshot = await processor.get(batch_id)
    rows = [row for row in snapshot.rows if status in (None, row.status)]
    headers: dict[str, str] = {}
    if status is RowStatus.FAILED:
        # Rows that may exist upstream would be created twice by a new upload: a resume
        # settles them. Only rows surely not upstream go into the file.
        again = reimportable_rows(rows)
        headers["X-Rows-Withheld"] = str(len(rows) - len(again))
        body, name = reimport_csv(again), f"{snapshot.job.id}-failed.csv"
    else:
        body, name = every_row_csv(rows), f"{snapshot.job.id}-results.csv"
    headers["Content-Disposition"] = f'attachment; filename="{name}"'
    return Response(body, media_type="text/csv; charset=utf-8", headers=headers)


def etag(job: Job) -> str:
    """Changes with every event (each row change has one) and every state change."""
    digest = hashlib.blake2s(f"{job.id}:{job.last_seq}:{job.state}".encode()).hexdigest()
    return f'W/"{digest[:24]}"'


def _matches(if_none_match: str, current: str) -> bool:
    """Weak comparison (RFC 9110): the opaque tags match, ``W/`` aside."""
    if if_none_match.strip() == "*":
        return True
    wanted = current.removeprefix("W/")
    return any(tag.strip().removeprefix("W/") == wanted for tag in if_none_match.split(","))
