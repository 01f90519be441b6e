"""Events: every change of a job, numbered per job without gaps."""

from __future__ import annotations

import datetime as dt
import enum
from uuid import UUID

import attrs

from ._jobs import JobState, Progress


class EventType(enum.StrEnum):
    JOB_ACCEPTED = "job.accepted"
    JOB_STATE_CHANGED = "job.state_changed"
    ROW_CREATED = "row.created"
    ROW_FAILED = "row.failed"
    ROW_UNKNOWN = "row.unknown"
    BATCH_ACTIVATED = "batch.activated"
    THROTTLE_CHANGED = "throttle.changed"
    JOB_FINISHED = "job.finished"


@attrs.frozen
class EventDraft:
    """An event before the store numbers it."""

    type: EventType
    progress: Progress
    state: JobState | None = None  # job events: the job's state after the change
    row: int | None = None
    hospital_id: int | None = None
    batch_id: UUID | None = None
    error_code: str | None = None
    error: str | None = None
    delay: float | None = None  # throttle.changed: seconds everyone waits (0 = lifted)
    count: int | None = None  # batch.activated: hospitals activated


@attrs.frozen
class Event:
    job_id: str
    seq: int
    at: dt.datetime
    type: EventType
    progress: Progress
    state: JobState | None = None
    row: int | None = None
    hospital_id: int | None = None
    batch_id: UUID | None = None
    error_code: str | None = None
    error: str | None = None
    delay: float | None = None
    count: int | None = None

    @classmethod
    def from_draft(cls, draft: EventDraft, *, job_id: str, seq: int, at: dt.datetime) -> Event:
        # Spelled out rather than attrs.asdict: this runs for every event.
        return cls(
            job_id=job_id,
            seq=seq,
            at=at,
            type=draft.type,
            progress=draft.progress,
            state=draft.state,
            row=draft.row,
            hospital_id=draft.hospital_id,
            batch_id=draft.batch_id,
            error_code=draft.error_code,
            error=draft.error,
            delay=draft.delay,
            count=draft.count,
        )
