"""Library objects to the service's JSON: every conversion happens here, so a route never
builds JSON by hand."""

from __future__ import annotations

from typing import Any, Literal

from hospital_bulk import (
    Event,
    Finding,
    Job,
    JobSnapshot,
    JobSummary,
    Progress,
    RowOutcome,
    RowStatus,
    ValidationReport,
)

from .schemas import (
    EventMessage,
    FindingOut,
    InvalidCsvOut,
    JobOut,
    JobStatusOut,
    JobSummaryOut,
    ProgressOut,
    RowOut,
    SnapshotMessage,
    ValidationOut,
)


def progress_out(progress: Progress) -> ProgressOut:
    return ProgressOut.model_validate(progress)


def summary_out(summary: JobSummary) -> JobSummaryOut:
    return JobSummaryOut.model_validate(summary)


def job_out(job: Job) -> JobOut:
    return JobOut(**_job_fields(job))


def status_out(snapshot: JobSnapshot) -> JobStatusOut:
    summary = snapshot.summary()
    return JobStatusOut(
        **_job_fields(snapshot.job),
        total_hospitals=summary.total_hospitals,
        processed_hospitals=summary.processed_hospitals,
        failed_hospitals=summary.failed_hospitals,
        batch_activated=summary.batch_activated,
        processing_time_seconds=summary.processing_time_seconds,
        rows=[
            _row_out(row, hospital.status)
            for row, hospital in zip(snapshot.rows, summary.hospitals, strict=True)
        ],
    )


def finding_out(finding: Finding) -> FindingOut:
    return FindingOut(
        row=finding.row,
        line=finding.line,
        column=finding.column,
        code=finding.code,
        message=finding.message,
        value=finding.value,
    )


def validation_out(report: ValidationReport) -> ValidationOut:
    return ValidationOut(
        valid=report.valid,
        total_rows=report.total_rows,
        valid_rows=report.valid_rows,
        error_count=report.error_count,
        warning_count=report.warning_count,
        errors=[finding_out(f) for f in report.errors],
        warnings=[finding_out(f) for f in report.warnings],
        has_header=report.has_header,
        delimiter=report.delimiter,
        encoding=report.encoding,
    )


def invalid_csv_out(report: ValidationReport) -> InvalidCsvOut:
    return InvalidCsvOut(
        detail=f"the file has {report.error_count} error(s); nothing was created",
        code="invalid_csv",
        errors=[finding_out(f) for f in report.errors],
        total_rows=report.total_rows,
        valid_rows=report.valid_rows,
        error_count=report.error_count,
        warning_count=report.warning_count,
        warnings=[finding_out(f) for f in report.warnings],
    )


def snapshot_message(job: Job, kind: Literal["snapshot", "end"] = "snapshot") -> SnapshotMessage:
    return SnapshotMessage(
        type=kind,
        batch_id=job.id,
        state=job.state,
        seq=job.last_seq,
        progress=progress_out(job.progress),
        job=job_out(job),
    )


def event_message(event: Event) -> EventMessage:
    return EventMessage(
        seq=event.seq,
        event=event.type,
        at=event.at,
        batch_id=event.job_id,
        progress=progress_out(event.progress),
        state=event.state,
        row=event.row,
        hospital_id=event.hospital_id,
        creation_batch_id=None if event.batch_id is None else str(event.batch_id),
        error_code=event.error_code,
        error=event.error,
        delay=event.delay,
        count=event.count,
    )


def _job_fields(job: Job) -> dict[str, Any]:
    return {
        "batch_id": job.id,
        "state": job.state,
        "file_name": job.file_name,
        "total_rows": job.total_rows,
        "progress": progress_out(job.progress),
        "created_at": job.created_at,
        "updated_at": job.updated_at,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
        "runs": job.runs,
        "last_seq": job.last_seq,
        "creation_batch_ids": [str(batch_id) for batch_id in job.batch_ids],
    }


def _row_out(row: RowOutcome, status: RowStatus) -> RowOut:
    return RowOut(
        row=row.row,
        line=row.line,
        name=row.record.name,
        address=row.record.address,
        phone=row.record.phone,
        state=row.state,
        status=status,
        hospital_id=row.hospital_id,
        creation_batch_id=str(row.batch_id),
        attempts=row.attempts,
        error_code=row.error_code,
        error=row.error,
    )
