"""Jobs, row outcomes and events: the records the engine keeps in a store.

A job is one uploaded file (its id is the ``batch_id`` clients see). Its state
changes only through :data:`TRANSITIONS`, applied by the store as a
compare-and-set so that two runners can never both start the same job.
"""

from __future__ import annotations

import datetime as dt
import enum
import uuid
from collections.abc import Iterable
from uuid import UUID

import attrs

from ._models import HospitalRecord
from .exceptions import JobConflictError


class JobState(enum.StrEnum):
    PENDING = "pending"
    #: Taken by a processor that runs as many jobs as it may: it starts it in turn.
    QUEUED = "queued"
    RUNNING = "running"
    ACTIVATING = "activating"
    #: Running, but the directory stopped answering: calls wait for it to come back.
    WAITING_FOR_DIRECTORY = "waiting_for_directory"
    COMPLETED = "completed"
    COMPLETED_WITH_ERRORS = "completed_with_errors"
    FAILED = "failed"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"
    DELETED = "deleted"

    @property
    def is_active(self) -> bool:
        """A runner holds the job right now (queued, running, activating, waiting)."""
        return self in ACTIVE_STATES

    @property
    def is_resumable(self) -> bool:
        return self in RESUMABLE_STATES

    @property
    def is_settled(self) -> bool:
        """Nobody works on the job and nobody is about to: neither held by a runner
        (queued, running...) nor pending."""
        return self not in ACTIVE_STATES and self is not JobState.PENDING


ACTIVE_STATES = frozenset(
    {JobState.QUEUED, JobState.RUNNING, JobState.ACTIVATING, JobState.WAITING_FOR_DIRECTORY}
)
RESUMABLE_STATES = frozenset(
    {
        JobState.COMPLETED_WITH_ERRORS,
        JobState.FAILED,
        JobState.CANCELLED,
        JobState.INTERRUPTED,
    }
)
FINISHED_STATES = frozenset(
    {
        JobState.COMPLETED,
        JobState.COMPLETED_WITH_ERRORS,
        JobState.FAILED,
        JobState.CANCELLED,
    }
)

#: For each target state, the states a job may move to it from.
TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    JobState.QUEUED: frozenset({JobState.PENDING}) | RESUMABLE_STATES,
    JobState.RUNNING: frozenset({JobState.PENDING, JobState.QUEUED, JobState.WAITING_FOR_DIRECTORY})
    | RESUMABLE_STATES,
    JobState.ACTIVATING: frozenset({JobState.RUNNING, JobState.WAITING_FOR_DIRECTORY}),
    JobState.WAITING_FOR_DIRECTORY: frozenset({JobState.RUNNING, JobState.ACTIVATING}),
    JobState.COMPLETED: ACTIVE_STATES,
    JobState.COMPLETED_WITH_ERRORS: ACTIVE_STATES,
    JobState.FAILED: ACTIVE_STATES,
    JobState.CANCELLED: ACTIVE_STATES | {JobState.PENDING},
    JobState.INTERRUPTED: ACTIVE_STATES,
    # Deleting again re-sends the upstream deletes: a first attempt may have failed halfway.
    JobState.DELETED: frozenset(JobState) - ACTIVE_STATES,
}


class RowState(enum.StrEnum):
    PENDING = "pending"
    CREATED = "created"
    ACTIVATED = "activated"
    FAILED = "failed"
    UNKNOWN = "unknown"


class RowStatus(enum.StrEnum):
    """A row's outcome in the original service's words."""

    CREATED_AND_ACTIVATED = "created_and_activated"
    CREATED = "created"  # created upstream, its batch not activated
    FAILED = "failed"  # not created, or not known to be


@attrs.frozen
class Progress:
    """The counters a progress bar needs, carried by every event."""

    total: int
    created: int = 0  # created upstream, activated or not
    activated: int = 0
    failed: int = 0
    unknown: int = 0
    rate: float = 0.0  # rows created per second in the current run

    @property
    def done(self) -> int:
        """Rows with a settled outcome in this run: created or failed."""
        return self.created + self.failed

    @property
    def pending(self) -> int:
        return self.total - self.created - self.failed - self.unknown

    @classmethod
    def count(cls, rows: Iterable[RowOutcome], *, rate: float = 0.0) -> Progress:
        total = created = activated = failed = unknown = 0
        for row in rows:
            total += 1
            if row.state is RowState.ACTIVATED:
                created += 1
                activated += 1
            elif row.state is RowState.CREATED:
                created += 1
            elif row.state is RowState.FAILED:
                failed += 1
            elif row.state is RowState.UNKNOWN:
                unknown += 1
        return cls(total, created, activated, failed, unknown, rate)


@attrs.frozen
class RowOutcome:
    """What happened to one input row."""

    row: int  # 1-based data row of the file
    line: int  # physical line of the file
    record: HospitalRecord
    creation_batch_id: UUID  # the upstream batch this row goes into
    state: RowState = RowState.PENDING
    hospital_id: int | None = None
    attempts: int = 0  # creates sent; a pending row with attempts > 0 may have landed
    error_code: str | None = None
    error: str | None = None
    #: When the last create was sent (Unix time): an unanswered one may land until
    #: ``RetryPolicy.landing_horizon`` seconds later, even after a crash.
    sent_at: float | None = None

    @property
    def status(self) -> RowStatus:
        """The row's outcome in the original service's words."""
        if self.state is RowState.ACTIVATED:
            return RowStatus.CREATED_AND_ACTIVATED
        if self.state is RowState.CREATED:
            return RowStatus.CREATED
        return RowStatus.FAILED

    @property
    def may_have_landed(self) -> bool:
        """A create was sent and never answered: the hospital may exist upstream, so the
        row is never sent again before its batch is listed."""
        return self.state is RowState.UNKNOWN or (
            self.state is RowState.PENDING and self.attempts > 0
        )

    @property
    def never_sent(self) -> bool:
        """Pending without a create ever sent: surely not upstream."""
        return self.state is RowState.PENDING and self.attempts == 0

    # The engine's per-row steps, spelled out: attrs.evolve is the costliest call on
    # the hot path.
    def sent(self, at: float) -> RowOutcome:
        """This row with one more create sent, at Unix time ``at``."""
        return RowOutcome(
            self.row,
            self.line,
            self.record,
            self.creation_batch_id,
            self.state,
            self.hospital_id,
            self.attempts + 1,
            self.error_code,
            self.error,
            at,
        )

    def settled(self, state: RowState, hospital_id: int | None) -> RowOutcome:
        """This row created (or activated) as ``hospital_id``, errors cleared."""
        return RowOutcome(
            self.row,
            self.line,
            self.record,
            self.creation_batch_id,
            state,
            hospital_id,
            self.attempts,
            None,
            None,
            self.sent_at,
        )


@attrs.frozen
class Fingerprint:
    """What a job was submitted from: the SHA-256 of the file's bytes, in hex, and the
    reading options that change what its rows are.

    An idempotency key used again must come with the same fingerprint: the same file,
    read the same way. The file's name does not count, nor the processor's limits (a
    retry reaching a process set up differently still finds its job).
    """

    sha256: str
    encoding: str = "utf-8"
    #: ``None``: picked from the first line.
    delimiter: str | None = None

    def differences(self, other: Fingerprint) -> list[str]:
        """What ``other`` (a later submission) changes, in words; empty when nothing."""
        changes = []
        if other.sha256 != self.sha256:
            changes.append("a different file")
        for option in ("encoding", "delimiter"):
            before, after = getattr(self, option), getattr(other, option)
            if before != after:
                changes.append(f"{option} {_shown(after)} instead of {_shown(before)}")
        return changes


def _shown(value: str | None) -> str:
    return "picked from the file" if value is None else repr(value)


@attrs.frozen
class Job:
    id: str
    state: JobState
    total_rows: int
    creation_batch_ids: tuple[UUID, ...]
    created_at: dt.datetime
    updated_at: dt.datetime
    progress: Progress
    file_name: str | None = None
    idempotency_key: str | None = None
    #: The directory the job's rows go to (its base URL, or ``embedded``): every run
    #: and delete of the job must use it. ``None``: not recorded (older jobs).
    directory: str | None = None
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    runs: int = 0
    last_seq: int = 0
    #: The processor running the job, and until when its lease holds.
    owner: str | None = None
    lease_expires: dt.datetime | None = None
    #: What the job was submitted from; ``None`` for jobs stored by earlier releases.
    fingerprint: Fingerprint | None = None

    def lease_expired(self, now: dt.datetime) -> bool:
        return self.lease_expires is None or self.lease_expires <= now


def transition_job(
    job: Job,
    state: JobState,
    now: dt.datetime,
    *,
    allowed: frozenset[JobState] | None = None,
    owner: str | None = None,
    lease: float | None = None,
) -> Job:
    """``job`` moved to ``state``: the one rule book every store applies, atomically.

    Raises :class:`JobConflictError` unless the move is in :data:`TRANSITIONS` (and from
    a state in ``allowed``), and, for an active job, unless ``owner`` is its owner (a
    recovering process names the dead owner it replaces). Moving into an active state
    takes the lease for ``owner``; moving out of one drops it.
    """
    sources = TRANSITIONS[state] if allowed is None else TRANSITIONS[state] & allowed
    if job.state not in sources:
        raise JobConflictError(job.id, job.state, f"move it to {state}")
    if job.state.is_active and job.owner not in (None, owner):
        raise JobConflictError(job.id, job.state, f"move it to {state} (another owner runs it)")
    moved = attrs.evolve(job, state=state, updated_at=now)
    if state.is_active:
        expires = now + dt.timedelta(seconds=lease) if lease is not None else None
        moved = attrs.evolve(moved, owner=owner, lease_expires=expires)
    else:
        moved = attrs.evolve(moved, owner=None, lease_expires=None)
    if state is JobState.RUNNING and job.state is not JobState.WAITING_FOR_DIRECTORY:
        # A new run; back from waiting for the directory is the same run going on.
        return attrs.evolve(moved, started_at=now, finished_at=None, runs=job.runs + 1)
    if state in FINISHED_STATES or state is JobState.INTERRUPTED:
        return attrs.evolve(moved, finished_at=now)
    return moved


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def new_job_id() -> str:
    return str(uuid.uuid4())


def creation_batch_ids_for(job_id: str, total_rows: int, batch_size: int) -> tuple[UUID, ...]:
    """The upstream batches of a job, derived from its id alone so a restart finds them.

    A job that fits in one batch uses its own id, so the id a client sees is the id
    in the directory.
    """
    job_uuid = UUID(job_id)
    count = max(1, -(-total_rows // batch_size))
    if count == 1:
        return (job_uuid,)
    return tuple(uuid.uuid5(job_uuid, f"batch-{index}") for index in range(count))
