"""The store protocol: where jobs, row outcomes and events live.

A store does the bookkeeping that must be atomic — numbering events without gaps,
compare-and-set on job states — so that the engine never needs a lock of its own
and several processes can share one store.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Protocol

from ._events import Event, EventDraft, EventType
from ._jobs import Job, JobState, Progress, RowOutcome
from ._models import RateLimit
from ._pacing import RateGate


class JobStore(Protocol):
    async def add_job(self, job: Job, rows: Sequence[RowOutcome], event: EventDraft) -> Event:
        """Record a new job with its rows and its first event (sequence 1)."""
        ...

    async def get_job(self, job_id: str) -> Job:
        """The job; :class:`~hospital_bulk.exceptions.JobNotFoundError` if unknown."""
        ...

    async def find_job(self, idempotency_key: str) -> Job | None:
        """The job submitted with this idempotency key, if any."""
        ...

    async def list_jobs(self, *, limit: int = 50, offset: int = 0) -> list[Job]:
        """Jobs, newest first."""
        ...

    async def get_rows(self, job_id: str) -> list[RowOutcome]:
        """Every row outcome of the job, by row number."""
        ...

    async def save(
        self, job_id: str, rows: Sequence[RowOutcome], events: Sequence[EventDraft]
    ) -> list[Event]:
        """Atomically replace these rows (by row number) and append these events.

        The job's ``progress`` becomes that of the last event.
        """
        ...

    async def transition(
        self,
        job_id: str,
        state: JobState,
        progress: Progress | None = None,
        *,
        then: Sequence[EventDraft] = (),
        allowed: frozenset[JobState] | None = None,
        owner: str | None = None,
        lease: float | None = None,
    ) -> Job:
        """Compare-and-set the job's state by :func:`~hospital_bulk._jobs.transition_job`
        and append, in the same atomic write, a ``job.state_changed`` event (carrying
        ``progress``, by default the job's) followed by the events ``then`` — so that a
        final state and its ``job.finished`` are never seen apart. Raises
        :class:`~hospital_bulk.exceptions.JobConflictError` when the rules refuse."""
        ...

    async def renew_lease(self, job_id: str, owner: str, lease: float) -> bool:
        """Extend ``owner``'s lease on an active job; ``False`` if it is no longer theirs."""
        ...

    async def active_jobs(self) -> list[Job]:
        """Jobs in an active state (running, activating), whoever runs them."""
        ...

    async def read_events(self, job_id: str, after: int = 0, *, wait: float = 0.0) -> list[Event]:
        """Events with ``seq > after``, oldest first; waits up to ``wait`` s for the first one."""
        ...

    def rate_gate(
        self, create_limit: RateLimit | None, other_limit: RateLimit | None, unpaced_pause: float
    ) -> RateGate | None:
        """Pacing shared by every process that uses this store, or ``None`` when the
        store is this process's alone (each processor then paces in its own memory)."""
        ...

    async def ping(self) -> None:
        """Raise :class:`~hospital_bulk.exceptions.StoreError` unless the store answers."""
        ...

    async def aclose(self) -> None: ...


async def follow(
    store: JobStore, job_id: str, after: int = 0, *, poll: float
) -> AsyncIterator[Event]:
    """The job's events after ``after``, stored then live, until it has settled and every
    event is handed out (see :meth:`BulkProcessor.watch <hospital_bulk.BulkProcessor.watch>`);
    a quiet job is looked at every ``poll`` seconds."""
    wait = 0.0  # a settled job with nothing new ends at once
    while True:
        events = await store.read_events(job_id, after, wait=wait)
        for event in events:
            yield event
            after = event.seq
        wait = poll
        if events and events[-1].type not in _SETTLING:
            continue  # the job still runs: no need to look at it
        job = await store.get_job(job_id)
        if job.state.is_settled and after >= job.last_seq:
            return


#: Events after which a watcher checks whether the job has settled.
_SETTLING = frozenset({EventType.JOB_FINISHED, EventType.JOB_STATE_CHANGED})
