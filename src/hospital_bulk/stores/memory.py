"""A store in this process's memory: for tests and throwaway runs."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import anyio
import attrs

from hospital_bulk._events import Event, EventDraft, transition_drafts
from hospital_bulk._jobs import Job, JobState, Progress, RowOutcome, transition_job, utcnow
from hospital_bulk._models import RateLimit
from hospital_bulk.exceptions import JobNotFoundError, StoreError

#: Most events handed out by one read, so a watcher far behind catches up in steps.
READ_LIMIT = 1000


class MemoryStore:
    def __init__(self) -> None:
        self._jobs: dict[str, Job] = {}
        self._rows: dict[str, dict[int, RowOutcome]] = {}
        self._events: dict[str, list[Event]] = {}
        self._heads: dict[str, tuple[int, Progress, dt.datetime]] = {}
        self._signals: dict[str, anyio.Event] = {}

    async def add_job(self, job: Job, rows: Sequence[RowOutcome], event: EventDraft) -> Event:
        if job.id in self._jobs:
            raise StoreError(f"a job with id {job.id!r} exists already")
        if job.idempotency_key is not None and await self.find_job(job.idempotency_key):
            raise StoreError(f"the idempotency key {job.idempotency_key!r} names a job already")
        self._jobs[job.id] = job
        self._rows[job.id] = {row.row: row for row in rows}
        self._events[job.id] = []
        return self._append(job.id, [event])[0]

    async def get_job(self, job_id: str) -> Job:
        try:
            return self._job(job_id)
        except KeyError:
            raise JobNotFoundError(job_id) from None

    async def find_job(self, idempotency_key: str) -> Job | None:
        for job_id, job in self._jobs.items():
            if job.idempotency_key == idempotency_key:
                return self._job(job_id)
        return None

    async def list_jobs(self, *, limit: int = 50, offset: int = 0) -> list[Job]:
        # Insertion order is creation order.
        newest_first = list(reversed(self._jobs))[offset : offset + limit]
        return [self._job(job_id) for job_id in newest_first]

    async def get_rows(self, job_id: str) -> list[RowOutcome]:
        await self.get_job(job_id)
        return sorted(self._rows[job_id].values(), key=lambda row: row.row)

    async def save(
        self, job_id: str, rows: Sequence[RowOutcome], events: Sequence[EventDraft]
    ) -> list[Event]:
        if job_id not in self._jobs:
            raise JobNotFoundError(job_id)
        stored = self._rows[job_id]
        for row in rows:
            stored[row.row] = row
        return self._append(job_id, events)

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
        job = await self.get_job(job_id)
        moved = transition_job(job, state, utcnow(), allowed=allowed, owner=owner, lease=lease)
        self._jobs[job_id] = moved
        self._append(job_id, transition_drafts(state, progress or job.progress, then))
        return self._job(job_id)

    async def renew_lease(self, job_id: str, owner: str, lease: float) -> bool:
        job = await self.get_job(job_id)
        if not job.state.is_active or job.owner != owner:
            return False
        expires = utcnow() + dt.timedelta(seconds=lease)
        self._jobs[job_id] = attrs.evolve(job, lease_expires=expires)
        return True

    async def active_jobs(self) -> list[Job]:
        return [job for job in self._jobs.values() if job.state.is_active]

    async def read_events(self, job_id: str, after: int = 0, *, wait: float = 0.0) -> list[Event]:
        await self.get_job(job_id)
        events = self._events[job_id]
        if len(events) <= after and wait > 0:
            with anyio.move_on_after(wait):
                await self._signal(job_id).wait()
        # Sequence numbers start at 1 and have no gaps, so seq n sits at index n - 1.
        return events[after : after + READ_LIMIT]

    def rate_gate(
        self, create_limit: RateLimit | None, other_limit: RateLimit | None, unpaced_pause: float
    ) -> None:
        """This store is one process's: each processor paces in its own memory."""
        return

    async def ping(self) -> None:
        return None

    async def aclose(self) -> None:
        return None

    def _append(self, job_id: str, drafts: Sequence[EventDraft]) -> list[Event]:
        if not drafts:
            return []
        events = self._events[job_id]
        now = utcnow()
        new = [
            Event.from_draft(draft, job_id=job_id, seq=len(events) + index + 1, at=now)
            for index, draft in enumerate(drafts)
        ]
        events.extend(new)
        self._heads[job_id] = (new[-1].seq, new[-1].progress, now)
        signal = self._signals.pop(job_id, None)
        if signal is not None:
            signal.set()
        return new

    def _job(self, job_id: str) -> Job:
        """The job with its latest event's bookkeeping applied (lazily: applying it on
        every event would cost an attrs.evolve per row)."""
        job = self._jobs[job_id]
        head = self._heads.pop(job_id, None)
        if head is not None:
            seq, progress, at = head
            job = attrs.evolve(job, last_seq=seq, progress=progress, updated_at=at)
            self._jobs[job_id] = job
        return job

    def _signal(self, job_id: str) -> anyio.Event:
        signal = self._signals.get(job_id)
        if signal is None:
            signal = self._signals[job_id] = anyio.Event()
        return signal
