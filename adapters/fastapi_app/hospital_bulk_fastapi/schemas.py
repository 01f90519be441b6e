"""The JSON the service speaks: pydantic models mirroring the library's attrs values.

``convert`` turns library objects into these, in one place.
"""

from __future__ import annotations

import datetime as dt
from typing import Literal
from uuid import UUID

from pydantic import AliasChoices, AliasPath, BaseModel, ConfigDict, Field

from hospital_bulk import EventType, JobState, RowState, RowStatus

_ID = "1b4e28ba-2fa1-4d3b-a3f5-ef19b5a7633b"


class _Model(BaseModel):
    # Built from the library's attrs values by attribute; aliases name the library's
    # attribute where the original service's field name differs.
    model_config = ConfigDict(from_attributes=True, populate_by_name=True)


class ProgressOut(_Model):
    """Row counters: ``created`` includes ``activated``; ``rate`` is rows created per second."""

    total: int
    created: int
    activated: int
    failed: int
    unknown: int
    pending: int
    rate: float


class HospitalOut(_Model):
    """One row in the original service's words."""

    row: int = Field(description="1-based data row of the file")
    hospital_id: int | None = Field(description="The id upstream, once created")
    name: str
    status: RowStatus
    error: str | None = None
    error_code: str | None = None


class JobSummaryOut(_Model):
    """The original service's answer to an upload, plus ``state``."""

    batch_id: str = Field(validation_alias=AliasChoices("batch_id", "job_id"))
    state: JobState
    total_hospitals: int
    processed_hospitals: int
    failed_hospitals: int
    processing_time_seconds: float
    batch_activated: bool
    hospitals: list[HospitalOut]

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "batch_id": _ID,
                    "state": "completed",
                    "total_hospitals": 1,
                    "processed_hospitals": 1,
                    "failed_hospitals": 0,
                    "processing_time_seconds": 5.2,
                    "batch_activated": True,
                    "hospitals": [
                        {
                            "row": 1,
                            "hospital_id": 101,
                            "name": "General Hospital",
                            "status": "created_and_activated",
                            "error": None,
                            "error_code": None,
                        }
                    ],
                }
            ]
        }
    )


class JobOut(_Model):
    """A job (the original's bulk batch) without its rows."""

    batch_id: str = Field(validation_alias=AliasChoices("batch_id", "id"))
    state: JobState
    file_name: str | None
    directory: str | None = Field(
        description="The directory the job's rows go to (its base URL, or `embedded`)"
    )
    total_rows: int
    progress: ProgressOut
    created_at: dt.datetime
    updated_at: dt.datetime
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    runs: int = Field(description="How many times the job was run (1 + resumes)")
    last_seq: int = Field(description="Sequence number of the job's latest event")
    creation_batch_ids: list[UUID] = Field(description="The upstream batches, 20 rows each")


class RowOut(_Model):
    """One row with everything known about it."""

    row: int
    line: int = Field(description="Physical line of the file where the row starts")
    name: str = Field(validation_alias=AliasPath("record", "name"))
    address: str = Field(validation_alias=AliasPath("record", "address"))
    phone: str | None = Field(validation_alias=AliasPath("record", "phone"))
    state: RowState
    status: RowStatus = Field(description="The state in the original service's words")
    hospital_id: int | None
    creation_batch_id: UUID
    attempts: int
    error_code: str | None
    error: str | None


class JobStatusOut(JobOut):
    """``GET /bulk/status/{batch_id}``: the job, its counters in both vocabularies, every row."""

    total_hospitals: int
    processed_hospitals: int
    failed_hospitals: int
    batch_activated: bool
    processing_time_seconds: float
    rows: list[RowOut]


class JobListOut(_Model):
    jobs: list[JobOut]
    limit: int
    offset: int
    next_offset: int | None = Field(description="Offset of the next page; null on the last")


class AcceptedOut(_Model):
    """A job that goes on in the background: follow it at these URLs."""

    batch_id: str
    state: JobState
    progress: ProgressOut
    status_url: str
    events_url: str
    websocket_url: str
    detail: str


class FindingOut(_Model):
    """One problem: a CSV finding, or (``code`` from pydantic) a bad request parameter."""

    row: int | None = None
    line: int | None = None
    column: str | None = None
    code: str
    message: str
    value: str | None = None


class ValidationOut(_Model):
    """``POST /hospitals/bulk/validate``: what an upload of this file would find."""

    valid: bool
    total_rows: int
    valid_rows: int
    error_count: int
    warning_count: int
    errors: list[FindingOut]
    warnings: list[FindingOut]
    has_header: bool
    delimiter: str
    encoding: str


class ErrorOut(_Model):
    """Every error: a human ``detail``, a stable ``code``, and ``errors`` item by item."""

    detail: str
    code: str
    errors: list[FindingOut] = []
    state: JobState | None = Field(
        default=None, description="The job's state, on a conflict or a failure during a job"
    )
    batch_id: str | None = Field(
        default=None,
        description="The job a failure during a job concerns: it exists, so uploading the"
        " file again would create its hospitals twice",
    )


class InvalidCsvOut(ErrorOut):
    """An upload refused because the file has errors: the validation report rides along."""

    total_rows: int
    valid_rows: int
    error_count: int
    warning_count: int
    warnings: list[FindingOut]


class HealthOut(_Model):
    status: Literal["ok", "unavailable"]
    detail: str | None = None


class SnapshotMessage(_Model):
    """First message of a live feed (``snapshot``) and its last (``end``): the job as it
    stands, rows left out."""

    type: Literal["snapshot", "end"] = "snapshot"
    batch_id: str
    state: JobState
    seq: int = Field(description="The snapshot reflects every event up to this sequence")
    progress: ProgressOut
    job: JobOut


class EventMessage(_Model):
    """One event. ``batch_id`` is the job; ``creation_batch_id`` the upstream batch."""

    type: Literal["event"] = "event"
    seq: int
    event: EventType
    at: dt.datetime
    batch_id: str
    progress: ProgressOut
    state: JobState | None = None
    row: int | None = None
    hospital_id: int | None = None
    creation_batch_id: UUID | None = None
    error_code: str | None = None
    error: str | None = None
    delay: float | None = None
    count: int | None = None


class StoppingMessage(_Model):
    """Last message of a live feed when the service shuts down (the WebSocket then
    closes with 1001): connect again later with ``after=seq`` to miss nothing."""

    type: Literal["service.stopping"] = "service.stopping"
    batch_id: str
    seq: int = Field(description="The last event sent before the stop")
    detail: str
    retry_after: int = Field(description="Seconds to wait before connecting again")


class ErrorMessage(_Model):
    type: Literal["error"] = "error"
    code: str
    detail: str
