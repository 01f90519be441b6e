"""One error body everywhere, and the one place where library exceptions become statuses.

Every error answers ``{"detail": "...", "code": "..."}`` (:class:`~.schemas.ErrorOut`);
``errors`` lists what was wrong item by item, and a conflict names the job's ``state``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException

from hospital_bulk import (
    DirectoryError,
    IdempotencyKeyReusedError,
    InvalidCsvError,
    JobConflictError,
    JobNotFoundError,
    JobState,
    StoreError,
)

from .convert import invalid_csv_out
from .schemas import ErrorOut, FindingOut, InvalidCsvOut

#: The ``code`` of errors that carry no code of their own, by status.
_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    409: "job_conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    502: "upstream_error",
    503: "unavailable",
}
_NO_BODY = frozenset({204, 304})
#: An Idempotency-Key sent again with another file or other options.
KEY_REUSED = "idempotency_key_reused"
#: Where the key was, as request errors name a parameter's location.
IDEMPOTENCY_KEY_COLUMN = "header.Idempotency-Key"


class ApiError(HTTPException):
    """An error the routes raise; an HTTPException so FastAPI passes it through unchanged
    even from inside body parsing (the upload size limit raises it there)."""

    def __init__(
        self,
        status_code: int,
        code: str,
        detail: str,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(status_code, detail, dict(headers) if headers else None)
        self.code = code


def store_failed_during_job(
    job_id: str, state: JobState, root: str, error: StoreError
) -> JSONResponse:
    """The store failed after the job was made: name the job and say what to do, so
    that nobody uploads the file again (no Retry-After: retrying this is the mistake)."""
    path = quote(job_id, safe="")
    detail = (
        f"the job store failed while job {job_id} ran ({error}); the job exists, so do not"
        f" upload the file again: once the store answers, follow {root}/bulk/status/{path}"
        f" (an interrupted job resumes with POST {root}/hospitals/bulk/{path}/resume, or"
        " by itself when the service restarts)"
    )
    body = ErrorOut(detail=detail, code="store_failed_during_job", state=state, batch_id=job_id)
    return error_response(500, body)


def error_response(
    status_code: int, body: ErrorOut, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    # `state` and `batch_id` belong to conflicts and failures during a job; every other
    # field is always there, null or not.
    unset = {"state"} if body.state is None else set()
    if body.batch_id is None:
        unset.add("batch_id")
    content = body.model_dump(mode="json", exclude=unset or None)
    return JSONResponse(content, status_code, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(HTTPException, _http_error)  # type: ignore[arg-type]  # Starlette's handler type is wider than it needs to be
    app.add_exception_handler(RequestValidationError, _request_invalid)  # type: ignore[arg-type]  # as above
    app.add_exception_handler(JobNotFoundError, _not_found)  # type: ignore[arg-type]  # as above
    app.add_exception_handler(JobConflictError, _conflict)  # type: ignore[arg-type]  # as above
    app.add_exception_handler(InvalidCsvError, _invalid_csv)  # type: ignore[arg-type]  # as above
    app.add_exception_handler(IdempotencyKeyReusedError, _key_reused)  # type: ignore[arg-type]  # as above
    app.add_exception_handler(StoreError, _store_failed)  # type: ignore[arg-type]  # as above
    app.add_exception_handler(DirectoryError, _upstream_failed)  # type: ignore[arg-type]  # as above


async def _http_error(request: Request, exc: HTTPException) -> Response:
    if exc.status_code in _NO_BODY:
        return Response(status_code=exc.status_code, headers=exc.headers)
    code = exc.code if isinstance(exc, ApiError) else _CODES.get(exc.status_code, "error")
    body = ErrorOut(detail=str(exc.detail), code=code)
    return error_response(exc.status_code, body, exc.headers)


async def _request_invalid(request: Request, exc: RequestValidationError) -> Response:
    errors = [
        FindingOut(
            column=".".join(str(part) for part in error.get("loc", ())),
            code=str(error.get("type", "invalid")),
            message=str(error.get("msg", "invalid")),
            value=_shown(error.get("input")),
        )
        for error in exc.errors()
    ]
    if any(error.column == "body.file" for error in errors):
        detail = "send the CSV file as multipart/form-data, in a form field named 'file'"
    else:
        detail = "invalid request: " + "; ".join(f"{e.column}: {e.message}" for e in errors)
    return error_response(422, ErrorOut(detail=detail, code="invalid_request", errors=errors))


async def _not_found(request: Request, exc: JobNotFoundError) -> Response:
    detail = f"no bulk batch with id {exc.job_id!r}"
    return error_response(404, ErrorOut(detail=detail, code="job_not_found"))


async def _conflict(request: Request, exc: JobConflictError) -> Response:
    try:
        state: JobState | None = JobState(exc.state)
    except ValueError:
        state = None
    return error_response(409, ErrorOut(detail=str(exc), code="job_conflict", state=state))


async def _invalid_csv(request: Request, exc: InvalidCsvError) -> Response:
    return error_response(400, invalid_csv_out(exc.report))


async def _key_reused(request: Request, exc: IdempotencyKeyReusedError) -> Response:
    # A 422 rather than a 409: the request is wrong, and no state of the job would make
    # it right (the IETF draft on Idempotency-Key says so too).
    problem = FindingOut(
        column=IDEMPOTENCY_KEY_COLUMN,
        code=KEY_REUSED,
        message="; ".join(exc.differences) or "a different submission",
        value=exc.key,
    )
    body = ErrorOut(detail=str(exc), code=KEY_REUSED, errors=[problem])
    return error_response(422, body)


async def _store_failed(request: Request, exc: StoreError) -> Response:
    body = ErrorOut(detail=f"the job store failed: {exc}", code="store_unavailable")
    return error_response(503, body, {"Retry-After": "5"})


async def _upstream_failed(request: Request, exc: DirectoryError) -> Response:
    body = ErrorOut(detail=f"the Hospital Directory failed: {exc}", code="upstream_error")
    return error_response(502, body)


def _shown(value: object) -> str | None:
    """A rejected input as text, short: request inputs can be anything, of any size."""
    if value is None or isinstance(value, dict | list):
        return None
    text = str(value)
    return text if len(text) <= 200 else text[:200] + "…"


# -- OpenAPI -------------------------------------------------------------------------

_DOCS: dict[int, tuple[str, Any, dict[str, Any]]] = {
    400: (
        "The multipart body is malformed",
        ErrorOut,
        {"detail": "Invalid multipart data.", "code": "bad_request"},
    ),
    # The 400 of uploads: responses(..., invalid_csv=True) documents it in place of 400.
    -400: (
        "The file is not a valid hospital CSV (`invalid_csv`, with its findings: nothing "
        "was created), or the multipart body is malformed (`bad_request`)",
        InvalidCsvOut | ErrorOut,
        {
            "detail": "the file has 1 error(s); nothing was created",
            "code": "invalid_csv",
            "errors": [
                {
                    "row": 2,
                    "line": 3,
                    "column": "address",
                    "code": "missing_value",
                    "message": "address is empty",
                    "value": "",
                }
            ],
            "total_rows": 2,
            "valid_rows": 1,
            "error_count": 1,
            "warning_count": 0,
            "warnings": [],
        },
    ),
    404: (
        "No bulk batch has this id",
        ErrorOut,
        {"detail": "no bulk batch with id 'abc'", "code": "job_not_found"},
    ),
    409: (
        "The batch's state does not allow this (it is running, say)",
        ErrorOut,
        {
            "detail": "job '1b4e28ba-2fa1-4d3b-a3f5-ef19b5a7633b' is completed: cannot run it:"
            " nothing is left to do",
            "code": "job_conflict",
            "state": "completed",
        },
    ),
    413: (
        "The upload is larger than HOSPITAL_BULK_MAX_UPLOAD_BYTES",
        ErrorOut,
        {"detail": "the upload exceeds 10485760 bytes", "code": "payload_too_large"},
    ),
    422: (
        "A parameter or the form is invalid (for an upload: no multipart field 'file')",
        ErrorOut,
        {
            "detail": "invalid request: query.limit: Input should be a valid integer",
            "code": "invalid_request",
            "errors": [
                {
                    "column": "query.limit",
                    "code": "int_parsing",
                    "message": "Input should be a valid integer",
                    "value": "ten",
                }
            ],
        },
    ),
    # The 422 of uploads: responses(..., upload=True) documents it in place of 422.
    -422: (
        "A parameter or the form is invalid (`invalid_request`: no multipart field 'file',"
        " an unknown `encoding`, a `delimiter` that is not one usable character), or the"
        " Idempotency-Key was used before for another file or other options"
        " (`idempotency_key_reused`: the key and the first job are named; nothing was"
        " created)",
        ErrorOut,
        {
            "detail": "the idempotency key '2026-11-30-registry' was used for job"
            " '1b4e28ba-2fa1-4d3b-a3f5-ef19b5a7633b', and now comes with a different file:"
            " send the same file with the same options to get that job, or use a new key"
            " for a new job",
            "code": KEY_REUSED,
            "errors": [
                {
                    "column": IDEMPOTENCY_KEY_COLUMN,
                    "code": KEY_REUSED,
                    "message": "a different file",
                    "value": "2026-11-30-registry",
                }
            ],
        },
    ),
    502: (
        "The Hospital Directory failed even after retries",
        ErrorOut,
        {"detail": "the Hospital Directory failed: 503", "code": "upstream_error"},
    ),
    500: (
        "The job store failed while the job ran: the answer names the job, which exists."
        " Do not upload the file again; follow the job once the store answers",
        ErrorOut,
        {
            "detail": "the job store failed while job 9a18aec6-5000-4e85-be17-ecc7911babc9"
            " ran (database is locked); the job exists, so do not upload the file again:"
            " once the store answers, follow /bulk/status/9a18aec6-5000-4e85-be17-ecc7911babc9"
            " (an interrupted job resumes with POST /hospitals/bulk/9a18aec6-5000-4e85-be17"
            "-ecc7911babc9/resume, or by itself when the service restarts)",
            "code": "store_failed_during_job",
            "state": "running",
            "batch_id": "9a18aec6-5000-4e85-be17-ecc7911babc9",
        },
    ),
    503: (
        "The job store is unavailable, or the service is starting or stopping",
        ErrorOut,
        {"detail": "the job store failed: database is locked", "code": "store_unavailable"},
    ),
}


_BAD_ENCODING = {
    "detail": "invalid request: query.encoding: Value error, unknown encoding 'klingon': give"
    " a text encoding Python knows, such as utf-8, cp1252 (Excel on Windows), latin-1 or"
    " utf-16",
    "code": "invalid_request",
    "errors": [
        {
            "column": "query.encoding",
            "code": "value_error",
            "message": "Value error, unknown encoding 'klingon': give a text encoding Python"
            " knows, such as utf-8, cp1252 (Excel on Windows), latin-1 or utf-16",
            "value": "klingon",
        }
    ],
}


def responses(
    *statuses: int, invalid_csv: bool = False, upload: bool = False
) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for these error statuses, each with its model and an example.

    ``invalid_csv`` documents the 400 of an upload, whose file may fail validation;
    ``upload`` its 422, which an Idempotency-Key used for another file gives too.
    """
    documented: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        swapped = (invalid_csv and status == 400) or (upload and status == 422)
        description, model, example = _DOCS[-status if swapped else status]
        content: dict[str, Any] = {"example": example}
        if status == 422 and upload:
            # Both codes of this 422, each with its example.
            content = {
                "examples": {
                    KEY_REUSED: {"summary": "Idempotency-Key reused", "value": example},
                    "invalid_request": {
                        "summary": "A bad parameter",
                        "value": _BAD_ENCODING,
                    },
                }
            }
        documented[status] = {
            "description": description,
            "model": model,
            "content": {"application/json": content},
        }
    return documented
