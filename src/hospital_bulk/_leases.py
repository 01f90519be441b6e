"""Leases and recovery: who runs a job, and what becomes of jobs whose runner died.

A running job is leased to its process's owner id, renewed every third of the
lease. A job whose lease expired, or whose owner is a dead process on this host,
is declared ``interrupted`` by :func:`recover`, with the rows whose create went
unanswered marked ``unknown`` so that a resume lists their batch before sending.
"""

from __future__ import annotations

import datetime as dt

import anyio
import attrs

from ._events import EventDraft, EventType
from ._jobs import Job, JobState, Progress, RowState, utcnow
from ._owners import owner_is_dead
from ._store import JobStore
from .exceptions import JobConflictError


async def keep_lease(store: JobStore, job_id: str, owner: str, ttl: float) -> None:
    """Renew ``owner``'s lease on the job until cancelled; return as soon as a renewal
    fails: someone declared us dead and may be running the job."""
    while True:
        await anyio.sleep(ttl / 3)
        if not await store.renew_lease(job_id, owner, ttl):
            return


async def recover(store: JobStore, *, running_here: frozenset[str] | set[str]) -> list[Job]:
    """Mark jobs whose runner died as interrupted (resumable); returns them.

    A runner is dead when its lease expired, or at once when it ran on this host
    and its process is gone (a restart after a crash). Jobs in ``running_here`` are
    this process's own.
    """
    recovered = []
    now = utcnow()
    for job in await store.active_jobs():
        if job.id in running_here:
            continue
        if not (job.lease_expired(now) or owner_is_dead(job.owner)):
            continue
        try:
            # Named as the dead owner: if it was alive after all and renewed, the
            # compare-and-set still holds only for that same owner.
            job = await store.transition(job.id, JobState.INTERRUPTED, owner=job.owner)
        except JobConflictError:
            continue  # another process recovered it first
        await mark_in_flight_unknown(store, job)
        recovered.append(job)
    return recovered


async def orphans(store: JobStore, lease_ttl: float, running_here: set[str]) -> list[str]:
    """The jobs nobody runs that should run, after :func:`recover`: the ``interrupted``
    ones (a shutdown, a crash or a hard stop left them resumable) and the ``pending``
    ones unchanged for longer than a lease (accepted by a process that died before
    starting them; a live one starts or queues a job at once)."""
    stale = utcnow() - dt.timedelta(seconds=lease_ttl)
    found: list[str] = []
    offset = 0
    while page := await store.list_jobs(limit=_PAGE, offset=offset):
        offset += len(page)
        found += [
            job.id
            for job in page
            if job.id not in running_here
            and (
                job.state is JobState.INTERRUPTED
                or (job.state is JobState.PENDING and job.updated_at < stale)
            )
        ]
    return found


#: Jobs read at a time when going through every job.
_PAGE = 500


async def mark_in_flight_unknown(store: JobStore, job: Job) -> None:
    """Rows whose create was sent but not answered may have landed: say so.

    Resume reconciles them by listing their batch before sending anything again.
    """
    rows = await store.get_rows(job.id)
    in_flight = [
        attrs.evolve(row, state=RowState.UNKNOWN, error_code="interrupted")
        for row in rows
        if row.state is RowState.PENDING and row.may_have_landed
    ]
    if not in_flight:
        return
    changed = {row.row: row for row in in_flight}
    progress = Progress.count(changed.get(row.row, row) for row in rows)
    drafts = [
        EventDraft(
            type=EventType.ROW_UNKNOWN,
            progress=progress,
            row=row.row,
            creation_batch_id=row.creation_batch_id,
            error_code=row.error_code,
        )
        for row in in_flight
    ]
    await store.save(job.id, in_flight, drafts)
