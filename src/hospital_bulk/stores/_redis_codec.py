"""How :class:`~hospital_bulk.stores.redis.RedisStore` writes jobs, rows and events
into Redis values, and reads them back.

A job is split over its hash's fields (see :mod:`._redis_scripts`): ``core`` holds
the JSON of every field but the hot ones, which have fields of their own so that
saves and lease renewals touch only them. The scripts take their values as
positional ``ARGV``; the ``*_args`` functions here build them in the order each
script's comment lists.

Kept apart from :mod:`.redis` so that the store there reads as its operations on
keys, while the encoding both directions must agree on sits in one place.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence

from hospital_bulk._convert import structure, unstructure
from hospital_bulk._events import Event, EventDraft
from hospital_bulk._jobs import Job, RowOutcome

#: The job hash fields kept apart from ``core``, so saves and renewals touch only them.
HOT_FIELDS = ("state", "owner", "lease_expires", "last_seq", "progress", "updated_at")


def to_json(value: object) -> str:
    return json.dumps(unstructure(value), separators=(",", ":"))


def stamp(moment: dt.datetime | None) -> str:
    return "" if moment is None else moment.isoformat()


def core(job: Job) -> str:
    data = unstructure(job)
    for field in HOT_FIELDS:
        del data[field]
    return json.dumps(data, separators=(",", ":"))


def job_from(fields: dict[str, str]) -> Job:
    data = json.loads(fields["core"])
    data.update(
        state=fields["state"],
        owner=fields["owner"] or None,
        lease_expires=fields["lease_expires"] or None,
        last_seq=int(fields["last_seq"]),
        progress=json.loads(fields["progress"]),
        updated_at=fields["updated_at"],
    )
    return structure(data, Job)


def rows_from(by_number: Mapping[str, str]) -> list[RowOutcome]:
    """The rows hash's outcomes, by row number."""
    return [
        structure(json.loads(by_number[number]), RowOutcome)
        for number in sorted(by_number, key=int)
    ]


def event_from(job_id: str, entry_id: str, fields: dict[str, str]) -> Event:
    data = json.loads(fields["event"])
    data.update(job_id=job_id, seq=int(entry_id.partition("-")[0]), at=fields["at"])
    return structure(data, Event)


def add_job_args(
    job: Job, rows: Sequence[RowOutcome], event: EventDraft, now: dt.datetime
) -> list[str | int | float]:
    """``ARGV`` of ``ADD_JOB``."""
    args: list[str | int | float] = [
        job.id,
        job.created_at.timestamp(),
        core(job),
        job.state.value,
        job.owner or "",
        stamp(job.lease_expires),
        to_json(event.progress),
        now.isoformat(),
        to_json(event),
        int(job.state.is_active),
    ]
    for row in rows:
        args += [row.row, to_json(row)]
    return args


def save_args(
    rows: Sequence[RowOutcome], events: Sequence[EventDraft], now: dt.datetime
) -> list[str | int]:
    """``ARGV`` of ``SAVE``."""
    progress = to_json(events[-1].progress) if events else ""
    args: list[str | int] = [now.isoformat(), progress, len(rows)]
    for row in rows:
        args += [row.row, to_json(row)]
    args += [to_json(event) for event in events]
    return args


def transition_args(
    moved: Job, rev: str, drafts: Sequence[EventDraft], expire: int
) -> list[str | int]:
    """``ARGV`` of ``TRANSITION``: ``moved`` is the job as the transition leaves it,
    ``rev`` the revision it was read at, ``expire`` its keys' expiry in ms (0: none)."""
    return [
        moved.id,
        rev,
        core(moved),
        moved.state.value,
        moved.owner or "",
        stamp(moved.lease_expires),
        moved.updated_at.isoformat(),
        to_json(drafts[-1].progress),
        int(moved.state.is_active),
        expire,
        *(to_json(draft) for draft in drafts),
    ]
