"""Library objects to the service's JSON: every conversion happens here, so a route never
builds JSON by hand. Most models read the library's values by attribute (``schemas``)."""

from __future__ import annotations

from typing import Literal

from hospital_bulk import Event, Job, JobSnapshot, ValidationReport

from .schemas import (
    EventMessage,
    InvalidCsvOut,
    JobOut,
    JobStatusOut,
    ProgressOut,
    RowOut,
    SnapshotMessage,
    ValidationOut,
)


def status_out(snapshot: JobSnapshot) -> JobStatusOut:
    summary = snapshot.summary()
    return JobStatusOut(
        **JobOut.model_validate(snapshot.job).model_dump(),
        total_hospitals=summary.total_hospitals,
        processed_hospitals=summary.processed_hospitals,
        failed_hospitals=summary.failed_hospitals,
        batch_activated=summary.batch_activated,
        processing_time_seconds=summary.processing_time_seconds,
        rows=[RowOut.model_validate(row) for row in snapshot.rows],
    )


def invalid_csv_out(report: ValidationReport) -> InvalidCsvOut:
    return InvalidCsvOut(
        detail=f"the file has {report.error_count} error(s); nothing was created",
        code="invalid_csv",
        **ValidationOut.model_validate(report).model_dump(include=_INVALID_CSV_FIELDS),
    )


_INVALID_CSV_FIELDS = {
    "errors",
    "total_rows",
    "valid_rows",
    "error_count",
    "warning_count",
    "warnings",
}


def snapshot_message(job: Job, kind: Literal["snapshot", "end"] = "snapshot") -> SnapshotMessage:
    return SnapshotMessage(
        type=kind,
        batch_id=job.id,
        state=job.state,
        seq=job.last_seq,
        progress=ProgressOut.model_validate(job.progress),
        job=JobOut.model_validate(job),
    )


def event_message(event: Event) -> EventMessage:
    # Spelled out: the message's own ``type`` field would read the event's.
    return EventMessage(
        seq=event.seq,
        event=event.type,
        at=event.at,
        batch_id=event.job_id,
        progress=ProgressOut.model_validate(event.progress),
        state=event.state,
        row=event.row,
        hospital_id=event.hospital_id,
        creation_batch_id=event.creation_batch_id,
        error_code=event.error_code,
        error=event.error,
        delay=event.delay,
        count=event.count,
    )
