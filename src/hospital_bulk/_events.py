"""Events: every change of a job, numbered per job without gaps."""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Sequence
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
    #: The directory stopped answering: ``error`` is its last failure, ``delay`` the
    #: seconds until the next probe. The job's state says ``waiting_for_directory``.
    DIRECTORY_UNAVAILABLE = "directory.unavailable"
    DIRECTORY_AVAILABLE = "directory.available"
    JOB_FINISHED = "job.finished"


@attrs.frozen
class EventDraft:
    """An event before the store numbers it."""

    type: EventType
    progress: Progress
    state: JobState | None = None  # job events: the job's state after the change
    row: int | None = None
    hospital_id: int | None = None
    creation_batch_id: UUID | None = None
    error_code: str | None = None
    error: str | None = None
    #: throttle.changed: seconds everyone waits (0 = lifted); directory.unavailable:
    #: seconds until the next probe
    delay: float | None = None
    count: int | None = None  # batch.activated: hospitals activated


@attrs.frozen
class Event(EventDraft):
    """An event as stored: numbered within its job, and dated."""

    job_id: str = attrs.field(kw_only=True)
    seq: int = attrs.field(kw_only=True)
    at: dt.datetime = attrs.field(kw_only=True)

    @classmethod
    def from_draft(cls, draft: EventDraft, *, job_id: str, seq: int, at: dt.datetime) -> Event:
        # Spelled out rather than attrs.asdict: this runs for every event.
        return cls(
            draft.type,
            draft.progress,
            draft.state,
            draft.row,
            draft.hospital_id,
            draft.creation_batch_id,
            draft.error_code,
            draft.error,
            draft.delay,
            draft.count,
            job_id=job_id,
            seq=seq,
            at=at,
        )


def transition_drafts(
    state: JobState, progress: Progress, then: Sequence[EventDraft]
) -> list[EventDraft]:
    """The events of a move to ``state``, in the order every store writes them at once:
    the state change, then what must follow it in the same write (``job.finished``)."""
    changed = EventDraft(type=EventType.JOB_STATE_CHANGED, progress=progress, state=state)
    return [changed, *then]
