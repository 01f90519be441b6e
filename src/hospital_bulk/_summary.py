"""Summaries in the original service's vocabulary, so adapters can answer in its shape."""

from __future__ import annotations

from collections.abc import Sequence

import attrs

from ._jobs import Job, RowOutcome, RowState

#: Per-row statuses of the original service.
CREATED_AND_ACTIVATED = "created_and_activated"
CREATED = "created"
FAILED = "failed"


@attrs.frozen
class RowSummary:
    row: int
    hospital_id: int | None
    name: str
    status: str  # created_and_activated | created | failed
    error: str | None = None
    error_code: str | None = None


@attrs.frozen
class JobSummary:
    batch_id: str
    state: str
    total_hospitals: int
    processed_hospitals: int
    failed_hospitals: int
    processing_time_seconds: float
    batch_activated: bool
    hospitals: tuple[RowSummary, ...]

    @classmethod
    def of(cls, job: Job, rows: Sequence[RowOutcome]) -> JobSummary:
        hospitals = tuple(_row_summary(row) for row in rows)
        processed = sum(1 for row in hospitals if row.status != FAILED)
        elapsed = 0.0
        if job.started_at is not None and job.finished_at is not None:
            elapsed = (job.finished_at - job.started_at).total_seconds()
        return cls(
            batch_id=job.id,
            state=job.state,
            total_hospitals=len(hospitals),
            processed_hospitals=processed,
            failed_hospitals=len(hospitals) - processed,
            processing_time_seconds=round(elapsed, 3),
            batch_activated=bool(hospitals)
            and all(row.status == CREATED_AND_ACTIVATED for row in hospitals),
            hospitals=hospitals,
        )


def _row_summary(row: RowOutcome) -> RowSummary:
    if row.state is RowState.ACTIVATED:
        status, error, code = CREATED_AND_ACTIVATED, None, None
    elif row.state is RowState.CREATED:
        status = CREATED
        error, code = row.error, row.error_code
    else:
        status, error, code = FAILED, row.error, row.error_code
        if row.state is RowState.UNKNOWN or (row.state is RowState.PENDING and row.attempts):
            code = code or "unknown"
            error = error or "the create may have landed upstream; resume to reconcile"
        elif row.state is RowState.PENDING:
            code = code or "not_sent"
            error = error or "not sent yet; resume to send it"
    return RowSummary(
        row=row.row,
        hospital_id=row.hospital_id,
        name=row.record.name,
        status=status,
        error=error,
        error_code=code,
    )
