"""Summaries in the original service's vocabulary, so adapters can answer in its shape,
and which rows may be imported again."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import attrs

from ._jobs import Job, JobState, RowOutcome, RowState, RowStatus


@attrs.frozen
class JobSnapshot:
    """A job with every row outcome: what a status view shows."""

    job: Job
    rows: tuple[RowOutcome, ...]

    def summary(self) -> JobSummary:
        return JobSummary.of(self.job, self.rows)


@attrs.frozen
class RowSummary:
    row: int
    hospital_id: int | None
    name: str
    status: RowStatus
    error: str | None = None
    error_code: str | None = None


@attrs.frozen
class JobSummary:
    job_id: str
    state: JobState
    total_hospitals: int
    processed_hospitals: int
    failed_hospitals: int
    processing_time_seconds: float
    batch_activated: bool
    hospitals: tuple[RowSummary, ...]

    @classmethod
    def of(cls, job: Job, rows: Sequence[RowOutcome]) -> JobSummary:
        hospitals = tuple(_row_summary(row) for row in rows)
        processed = sum(1 for row in hospitals if row.status is not RowStatus.FAILED)
        elapsed = 0.0
        if job.started_at is not None and job.finished_at is not None:
            elapsed = (job.finished_at - job.started_at).total_seconds()
        return cls(
            job_id=job.id,
            state=job.state,
            total_hospitals=len(hospitals),
            processed_hospitals=processed,
            failed_hospitals=len(hospitals) - processed,
            processing_time_seconds=round(elapsed, 3),
            batch_activated=bool(hospitals)
            and all(row.status is RowStatus.CREATED_AND_ACTIVATED for row in hospitals),
            hospitals=hospitals,
        )


def reimportable_rows(rows: Iterable[RowOutcome]) -> list[RowOutcome]:
    """Rows surely not upstream, which a new upload of them cannot duplicate: failed
    ones (every failure we record proves the create did not land) and those never sent.

    Rows that may have landed are left out: only a resume, which lists their batch
    first, can tell whether they exist.
    """
    return [row for row in rows if row.state is RowState.FAILED or row.never_sent]


def _row_summary(row: RowOutcome) -> RowSummary:
    status, error, code = row.status, row.error, row.error_code
    if status is RowStatus.CREATED_AND_ACTIVATED:
        error, code = None, None
    elif status is RowStatus.FAILED:
        if row.may_have_landed:
            code = code or "unknown"
            error = error or "the create may have landed upstream; resume to reconcile"
        elif row.never_sent:
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
