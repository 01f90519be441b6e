"""A store in Redis: for several service processes or hosts sharing jobs, events and pacing.

Keys, under a namespace (``hospital-bulk`` by default)::

    {ns}:job:{id}              hash: the job (see _redis_scripts for its fields)
    {ns}:job:{id}:rows         hash: row number -> row outcome JSON
    {ns}:job:{id}:events       stream: ids {seq}-0, replayed with XRANGE, followed with XREAD
    {ns}:idempotency:{key}     string: the job submitted with that key
    {ns}:jobs                  sorted set: job ids by creation time
    {ns}:active                set: ids of running and activating jobs
    {ns}:pace:takes:{kind}     sorted set: recent takes of creates|other (RedisRateGate)
    {ns}:pace:seq              string: numbers the takes, so each is a member of its own
    {ns}:pace:paused           string: until when a 429 pauses everyone

A job's own keys expire ``retention`` seconds after it finishes or is deleted (and
lose the expiry if it is resumed); the index forgets an expired job when it meets it.
Writes that must be atomic are Lua scripts; a transition reads the job, applies
:func:`~hospital_bulk._jobs.transition_job` in Python and writes back only if the
job's revision is unchanged, retrying otherwise: saves do not bump the revision, so
a busy job's saves never make its transitions retry.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any, Self, cast

import anyio
import attrs
from redis.asyncio import Redis

from hospital_bulk._events import Event, EventDraft, transition_drafts
from hospital_bulk._jobs import (
    ACTIVE_STATES,
    FINISHED_STATES,
    Job,
    JobState,
    Progress,
    RowOutcome,
    transition_job,
    utcnow,
)
from hospital_bulk._models import RateLimit
from hospital_bulk.exceptions import JobNotFoundError, StoreError

from . import _redis_codec as codec
from . import _redis_scripts as scripts
from ._redis_gate import RedisRateGate
from ._redis_scripts import store_errors
from .memory import READ_LIMIT

__all__ = ["RedisRateGate", "RedisStore"]

#: How long a finished or deleted job stays: 30 days.
DEFAULT_RETENTION = 30 * 24 * 3600.0

#: States whose job's keys start expiring.
_EXPIRING_STATES = FINISHED_STATES | {JobState.DELETED}
#: A transition that keeps losing its compare-and-set gives up after this many reads.
_TRANSITION_ATTEMPTS = 100

_UNKNOWN = -1
_RACED = -2


class RedisStore:
    """Jobs, rows and events in Redis, shared by every process that opens the same
    Redis (and namespace).

    ``client`` must decode responses (``decode_responses=True``); :meth:`open` makes one.
    """

    def __init__(
        self,
        client: Redis,
        *,
        namespace: str = "hospital-bulk",
        retention: float = DEFAULT_RETENTION,
        owns_client: bool = False,
    ) -> None:
        """``owns_client``: :meth:`aclose` closes ``client`` too."""
        if not client.connection_pool.connection_kwargs.get("decode_responses"):
            raise ValueError("RedisStore needs a client made with decode_responses=True")
        if retention <= 0:
            raise ValueError("retention must be positive")
        self.client = client
        self.namespace = namespace
        self.retention = retention
        self._owns_client = owns_client
        self._index_key = f"{namespace}:jobs"
        self._active_key = f"{namespace}:active"
        self._add_job = client.register_script(scripts.ADD_JOB)
        self._save = client.register_script(scripts.SAVE)
        self._transition = client.register_script(scripts.TRANSITION)
        self._renew_lease = client.register_script(scripts.RENEW_LEASE)

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        namespace: str = "hospital-bulk",
        retention: float = DEFAULT_RETENTION,
    ) -> Self:
        """Connect to ``redis://host:port/db`` (or ``rediss://``, ``unix://``) and check
        that it answers; raises :class:`StoreError` if it does not."""
        client = Redis.from_url(url, decode_responses=True)
        store = cls(client, namespace=namespace, retention=retention, owns_client=True)
        try:
            await store.ping()
        except BaseException:
            with anyio.CancelScope(shield=True):
                await client.aclose()
            raise
        return store

    def rate_gate(
        self,
        create_limit: RateLimit | None,
        other_limit: RateLimit | None,
        unpaced_pause: float = 1.0,
    ) -> RedisRateGate:
        """Pacing shared with every process on this Redis and namespace; a
        ``BulkProcessor`` on this store takes it by itself."""
        return RedisRateGate(
            self.client,
            namespace=self.namespace,
            create_limit=create_limit,
            other_limit=other_limit,
            unpaced_pause=unpaced_pause,
        )

    # -- the store protocol ----------------------------------------------------------

    async def add_job(self, job: Job, rows: Sequence[RowOutcome], event: EventDraft) -> Event:
        now = utcnow()
        keys = [
            self._job_key(job.id),
            self._rows_key(job.id),
            self._events_key(job.id),
            self._index_key,
            self._active_key,
        ]
        if job.idempotency_key is not None:
            keys.append(self._idempotency_key(job.idempotency_key))
        args = codec.add_job_args(job, rows, event, now)
        with store_errors():
            added = await self._add_job(keys=keys, args=args)
        if added == 0:
            raise StoreError(f"a job with id {job.id!r} exists already")
        if added == -1:
            raise StoreError(f"the idempotency key {job.idempotency_key!r} names a job already")
        return Event.from_draft(event, job_id=job.id, seq=1, at=now)

    async def get_job(self, job_id: str) -> Job:
        with store_errors():
            fields = await self.client.hgetall(self._job_key(job_id))
        if not fields:
            raise JobNotFoundError(job_id)
        return codec.job_from(cast(dict[str, str], fields))

    async def find_job(self, idempotency_key: str) -> Job | None:
        with store_errors():
            job_id = await self.client.get(self._idempotency_key(idempotency_key))
        if job_id is None:
            return None
        try:
            return await self.get_job(cast(str, job_id))
        except JobNotFoundError:
            return None  # expired with its job a moment ago

    async def list_jobs(self, *, limit: int = 50, offset: int = 0) -> list[Job]:
        jobs: list[Job] = []
        start = offset
        while len(jobs) < limit:
            with store_errors():
                ids = await self.client.zrevrange(
                    self._index_key, start, start + limit - len(jobs) - 1
                )
            if not ids:
                break
            found = await self._get_jobs(cast(list[str], ids))
            jobs += [job for job in found.values() if job is not None]
            # Expired jobs leave the index when met; what followed them moves up.
            start += sum(job is not None for job in found.values())
        return jobs

    async def get_rows(self, job_id: str) -> list[RowOutcome]:
        with store_errors():
            async with self.client.pipeline(transaction=True) as pipe:
                pipe.exists(self._job_key(job_id))
                pipe.hgetall(self._rows_key(job_id))
                exists, rows = await pipe.execute()
        if not exists:
            raise JobNotFoundError(job_id)
        return codec.rows_from(cast(dict[str, str], rows))

    async def save(
        self, job_id: str, rows: Sequence[RowOutcome], events: Sequence[EventDraft]
    ) -> list[Event]:
        now = utcnow()
        args = codec.save_args(rows, events, now)
        keys = [self._job_key(job_id), self._rows_key(job_id), self._events_key(job_id)]
        with store_errors():
            first = int(await self._save(keys=keys, args=args))
        if first == _UNKNOWN:
            raise JobNotFoundError(job_id)
        return [
            Event.from_draft(draft, job_id=job_id, seq=first + index, at=now)
            for index, draft in enumerate(events)
        ]

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
        for _ in range(_TRANSITION_ATTEMPTS):
            with store_errors():
                fields = cast(dict[str, str], await self.client.hgetall(self._job_key(job_id)))
            if not fields:
                raise JobNotFoundError(job_id)
            now = utcnow()
            job = codec.job_from(fields)
            moved = transition_job(job, state, now, allowed=allowed, owner=owner, lease=lease)
            drafts = transition_drafts(state, progress or job.progress, then)
            seq = await self._write_transition(moved, fields["rev"], drafts)
            if seq == _UNKNOWN:
                raise JobNotFoundError(job_id)
            if seq != _RACED:
                return attrs.evolve(
                    moved, last_seq=seq, progress=drafts[-1].progress, updated_at=now
                )
        raise StoreError(f"job {job_id!r} changed {_TRANSITION_ATTEMPTS} times while moving it")

    async def renew_lease(self, job_id: str, owner: str, lease: float) -> bool:
        expires = utcnow() + dt.timedelta(seconds=lease)
        args = [owner, expires.isoformat(), *(state.value for state in ACTIVE_STATES)]
        with store_errors():
            renewed = int(await self._renew_lease(keys=[self._job_key(job_id)], args=args))
        if renewed == _UNKNOWN:
            raise JobNotFoundError(job_id)
        return renewed == 1

    async def active_jobs(self) -> list[Job]:
        with store_errors():
            ids = await self.client.smembers(self._active_key)
        found = await self._get_jobs(sorted(cast(set[str], ids)))
        jobs = [job for job in found.values() if job is not None and job.state.is_active]
        return sorted(jobs, key=lambda job: job.created_at)

    async def read_events(self, job_id: str, after: int = 0, *, wait: float = 0.0) -> list[Event]:
        key = self._events_key(job_id)
        with store_errors():
            async with self.client.pipeline(transaction=False) as pipe:
                pipe.exists(self._job_key(job_id))
                pipe.xrange(key, f"{after + 1}-0", "+", count=READ_LIMIT)
                exists, entries = await pipe.execute()
            if not exists:
                raise JobNotFoundError(job_id)
            if not entries and wait > 0:
                entries = await self._follow(key, after, wait)
        return [codec.event_from(job_id, entry_id, fields) for entry_id, fields in entries]

    async def ping(self) -> None:
        with store_errors():
            await self.client.ping()

    async def aclose(self) -> None:
        if self._owns_client:
            await self.client.aclose()

    # -- internals -------------------------------------------------------------------

    async def _write_transition(self, moved: Job, rev: str, drafts: Sequence[EventDraft]) -> int:
        keys = [
            self._job_key(moved.id),
            self._events_key(moved.id),
            self._active_key,
            self._rows_key(moved.id),
        ]
        if moved.idempotency_key is not None:
            keys.append(self._idempotency_key(moved.idempotency_key))
        expire = round(self.retention * 1000) if moved.state in _EXPIRING_STATES else 0
        args = codec.transition_args(moved, rev, drafts, expire)
        with store_errors():
            return int(await self._transition(keys=keys, args=args))

    async def _follow(self, key: str, after: int, wait: float) -> list[tuple[str, dict[str, str]]]:
        """Block on the stream for up to ``wait`` s, in steps the socket timeout allows."""
        timeout = self.client.connection_pool.connection_kwargs.get("socket_timeout")
        step = wait if timeout is None else min(wait, timeout / 2)
        deadline = anyio.current_time() + wait
        while (left := deadline - anyio.current_time()) > 0:
            # BLOCK 0 would mean for ever.
            block = max(1, round(min(step, left) * 1000))
            streams = await self.client.xread({key: f"{after}-0"}, count=READ_LIMIT, block=block)
            if streams:
                # RESP2 answers [[stream, entries]] (a RESP3 client would get a dict).
                entries = cast(list[list[Any]], streams)[0][1]
                return cast(list[tuple[str, dict[str, str]]], entries)
        return []

    async def _get_jobs(self, ids: Sequence[str]) -> dict[str, Job | None]:
        """The jobs with these ids, ``None`` for those expired (they leave the indexes)."""
        if not ids:
            return {}
        with store_errors():
            async with self.client.pipeline(transaction=False) as pipe:
                for job_id in ids:
                    pipe.hgetall(self._job_key(job_id))
                answers = await pipe.execute()
            found = {
                job_id: codec.job_from(fields) if fields else None
                for job_id, fields in zip(ids, answers, strict=True)
            }
            gone = [job_id for job_id, job in found.items() if job is None]
            if gone:
                async with self.client.pipeline(transaction=False) as pipe:
                    pipe.zrem(self._index_key, *gone)
                    pipe.srem(self._active_key, *gone)
                    await pipe.execute()
        return found

    def _job_key(self, job_id: str) -> str:
        return f"{self.namespace}:job:{job_id}"

    def _rows_key(self, job_id: str) -> str:
        return f"{self.namespace}:job:{job_id}:rows"

    def _events_key(self, job_id: str) -> str:
        return f"{self.namespace}:job:{job_id}:events"

    def _idempotency_key(self, key: str) -> str:
        return f"{self.namespace}:idempotency:{key}"
