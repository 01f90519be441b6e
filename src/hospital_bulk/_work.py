"""One run of one job: create every row exactly once, then activate its batches.

The rules (DESIGN.md, "Core concepts"):

- a create that provably never reached the upstream (not sent, 429) is retried
  with backoff; one that may have landed makes the row ``unknown`` and is never
  re-sent blindly: the batch is listed first and matched as a multiset on
  (name, address, phone), extra copies found are deleted;
- a batch is activated only when every one of its rows is confirmed created,
  because the upstream activates a batch once and all at once;
- every row change is saved with its event before the next step relies on it.
"""

from __future__ import annotations

import collections
import functools
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar
from uuid import UUID

import anyio
import attrs

from ._calls import StopRequestedError, UpstreamCalls
from ._events import EventDraft, EventType
from ._jobs import Job, JobState, Progress, RowOutcome, RowState
from ._models import Hospital
from ._pacing import CallKind
from ._store import JobStore
from .exceptions import (
    DirectoryError,
    MaybeLandedError,
    NotSentError,
    RejectedError,
    ThrottledError,
)

T = TypeVar("T")


class _Tally:
    """Row counters kept incrementally: recounting every row per event would be O(n²)."""

    def __init__(self, rows: Sequence[RowOutcome]) -> None:
        progress = Progress.count(rows)
        self.counts = collections.Counter(row.state for row in rows)
        self.total = progress.total
        self.created_this_run = 0
        self.started = time.monotonic()

    def move(self, old: RowState, new: RowState) -> None:
        self.counts[old] -= 1
        self.counts[new] += 1
        if new is RowState.CREATED and old is not RowState.ACTIVATED:
            self.created_this_run += 1

    def progress(self) -> Progress:
        counts = self.counts
        elapsed = time.monotonic() - self.started
        rate = self.created_this_run / elapsed if elapsed > 0 else 0.0
        return Progress(
            total=self.total,
            created=counts[RowState.CREATED] + counts[RowState.ACTIVATED],
            activated=counts[RowState.ACTIVATED],
            failed=counts[RowState.FAILED],
            unknown=counts[RowState.UNKNOWN],
            rate=round(rate, 3),
        )


class JobWork:
    """The work of one run of a job in this process: its rows as they stand, and the
    steps that create, reconcile and activate them."""

    def __init__(
        self,
        job: Job,
        rows: Sequence[RowOutcome],
        *,
        calls: UpstreamCalls,
        store: JobStore,
        last_activity: float | None = None,
    ) -> None:
        """``last_activity``: seconds since the job's previous run last did anything,
        the time its unanswered creates have had to land."""
        self.job = job
        self.rows = {row.row: row for row in rows}
        self._batches: dict[UUID, list[int]] = collections.defaultdict(list)
        for row in rows:
            self._batches[row.creation_batch_id].append(row.row)
        self.calls = calls
        self.client = calls.client
        self.store = store
        self.policy = calls.policy
        self.tally = _Tally(rows)
        self.stop_requested = False
        self._stop = anyio.Event()
        self.lease_lost = False
        # When each row's last create was sent (monotonic); rows sent by an earlier
        # run count from that run's last activity.
        self._sent_at: dict[int, float] = {}
        self._earlier_sends = time.monotonic() - (last_activity or 0.0)

    # -- the whole run ---------------------------------------------------------------

    async def create_all(self) -> None:
        """Create every batch's rows, a few batches at a time: enough to keep every
        concurrency slot busy, without thousands of tasks queueing for them."""
        batches = iter(self.job.creation_batch_ids)

        async def take_batches() -> None:
            for creation_batch_id in batches:  # shared: each batch is taken by one worker
                await self._create_batch(creation_batch_id)

        size = max(len(ids) for ids in self._batches.values())
        workers = min(
            len(self.job.creation_batch_ids), -(-self.calls.pacer.concurrency // size) + 1
        )
        async with anyio.create_task_group() as group:
            for _ in range(workers):
                group.start_soon(take_batches)

    async def activate_all(self) -> None:
        async with anyio.create_task_group() as group:
            for creation_batch_id in self.job.creation_batch_ids:
                group.start_soon(self._activate_batch, creation_batch_id)

    def stop(self) -> None:
        """Send no more creates; those in flight finish."""
        self.stop_requested = True
        self._stop.set()

    def final_state(self) -> JobState:
        progress = self.tally.progress()
        if progress.activated == progress.total:
            return JobState.COMPLETED  # even if a cancel came too late to skip anything
        if self.stop_requested:
            return JobState.CANCELLED
        if progress.created > 0:
            return JobState.COMPLETED_WITH_ERRORS
        return JobState.FAILED

    async def announce_throttle(self, delay: float) -> None:
        """Tell this job's watchers that a 429 pauses every call (``0``: it is over)."""
        draft = EventDraft(
            type=EventType.THROTTLE_CHANGED, progress=self.tally.progress(), delay=delay
        )
        await self.store.save(self.job.id, (), [draft])

    # -- creates ---------------------------------------------------------------------

    def batch_rows(self, creation_batch_id: UUID) -> list[RowOutcome]:
        return [self.rows[number] for number in self._batches[creation_batch_id]]

    async def _create_batch(self, creation_batch_id: UUID) -> None:
        uncertain = any(row.may_have_landed for row in self.batch_rows(creation_batch_id))
        if uncertain and not await self._try_reconcile(creation_batch_id):
            return
        # Failed rows are retried once per run; later rounds resend only what the
        # listing proved missing.
        retry: tuple[RowState, ...] = (RowState.PENDING, RowState.FAILED)
        for _ in range(self.policy.reconcile_rounds + 1):
            todo = [row.row for row in self.batch_rows(creation_batch_id) if row.state in retry]
            async with anyio.create_task_group() as group:
                for number in todo:
                    group.start_soon(self._create_row, number)
            if self.stop_requested or not any(
                row.state is RowState.UNKNOWN for row in self.batch_rows(creation_batch_id)
            ):
                return
            if not await self._try_reconcile(creation_batch_id):
                return
            retry = (RowState.PENDING,)

    async def _create_row(self, number: int) -> None:
        row = self.rows[number]

        async def send() -> Hospital:
            # Saved before sending: after a crash, attempts > 0 says "may have landed".
            await self._update(self.rows[number].sent())
            self._sent_at[number] = time.monotonic()
            return await self.client.create_hospital(row.record, row.creation_batch_id)

        try:
            hospital = await self.call(CallKind.CREATE, send)
        except StopRequestedError:
            return
        except MaybeLandedError as error:
            await self._set(number, RowState.UNKNOWN, EventType.ROW_UNKNOWN, "maybe_landed", error)
        except RejectedError as error:
            if _batch_full(error):
                # We never send more than 20 rows to a batch: a full one holds copies
                # that landed late. Listing it sorts them out.
                await self._set(
                    number, RowState.UNKNOWN, EventType.ROW_UNKNOWN, "batch_full", error
                )
            else:
                await self._set(number, RowState.FAILED, EventType.ROW_FAILED, "rejected", error)
        except ThrottledError as error:
            await self._set(number, RowState.FAILED, EventType.ROW_FAILED, "throttled", error)
        except NotSentError as error:
            await self._set(number, RowState.FAILED, EventType.ROW_FAILED, "not_sent", error)
        else:
            created = self.rows[number].settled(RowState.CREATED, hospital.id)
            await self._update(created, EventType.ROW_CREATED)

    # -- reconciliation --------------------------------------------------------------

    async def _try_reconcile(self, creation_batch_id: UUID) -> bool:
        """Reconcile; ``False`` when the upstream would not answer even after retries:
        the batch then waits, unknown rows and all, for a resume."""
        try:
            await self._reconcile(creation_batch_id)
        except DirectoryError:
            return False
        return True

    async def _reconcile(self, creation_batch_id: UUID) -> None:
        """Match the batch as listed upstream with our rows; unmatched rows become pending.

        Rows that know their hospital id keep it while it is listed. The other
        hospitals are matched as a multiset on (name, address, phone) against rows that
        may have landed, unknown ones first. What no row claims is an extra copy: deleted.
        """
        await self._settle(creation_batch_id)
        listing = await self.call(
            CallKind.OTHER, lambda: self.client.list_batch(creation_batch_id), idempotent=True
        )
        by_id = {hospital.id: hospital for hospital in listing}
        rows = self.batch_rows(creation_batch_id)
        for row in rows:
            if row.hospital_id is None:
                continue
            hospital = by_id.pop(row.hospital_id, None)
            if hospital is None:
                # Gone upstream (restarted, or dropped past its capacity): send again.
                await self._set(row.row, RowState.PENDING, None, None, None, hospital_id=None)
            elif hospital.active and row.state is not RowState.ACTIVATED:
                await self._update(attrs.evolve(row, state=RowState.ACTIVATED))

        unclaimed: dict[tuple[str, str, str | None], list[Hospital]] = collections.defaultdict(list)
        for hospital in sorted(by_id.values(), key=lambda hospital: hospital.id):
            unclaimed[hospital.record().key()].append(hospital)
        candidates = [r for r in rows if r.hospital_id is None and r.may_have_landed]
        candidates.sort(key=lambda r: r.state is not RowState.UNKNOWN)
        for row in candidates:
            copies = unclaimed.get(row.record.key())
            if copies:
                hospital = copies.pop(0)
                state = RowState.ACTIVATED if hospital.active else RowState.CREATED
                found = attrs.evolve(
                    row, state=state, hospital_id=hospital.id, error=None, error_code=None
                )
                await self._update(found, EventType.ROW_CREATED)
            else:
                await self._set(row.row, RowState.PENDING, None, None, None)
        for copies in unclaimed.values():
            for extra in copies:
                await self.call(
                    CallKind.OTHER,
                    functools.partial(self.client.delete_hospital, extra.id),
                    idempotent=True,
                )

    async def _settle(self, creation_batch_id: UUID) -> None:
        """Give the batch's unanswered creates their time to land before it is listed."""
        sent = [
            self._sent_at.get(row.row, self._earlier_sends)
            for row in self.batch_rows(creation_batch_id)
            if row.may_have_landed
        ]
        if sent and self.policy.settle > 0:
            wait = max(sent) + self.policy.settle - time.monotonic()
            if wait > 0:
                await anyio.sleep(wait)

    # -- activation ------------------------------------------------------------------

    async def _activate_batch(self, creation_batch_id: UUID) -> None:
        for _ in range(self.policy.reconcile_rounds + 1):
            rows = self.batch_rows(creation_batch_id)
            if any(row.state not in (RowState.CREATED, RowState.ACTIVATED) for row in rows):
                return  # never activate a batch with a row missing: it could never be fixed
            if all(row.state is RowState.ACTIVATED for row in rows):
                return
            try:
                count = await self.call(
                    CallKind.OTHER, lambda: self.client.activate_batch(creation_batch_id)
                )
            except StopRequestedError:
                return
            except (MaybeLandedError, RejectedError):
                # A lost response, or an activation of an earlier run: the listing tells.
                if not await self._try_reconcile(creation_batch_id):
                    return
                continue
            except DirectoryError:
                return  # retries exhausted: the job ends with this batch inactive, resumable
            activated = [row.settled(RowState.ACTIVATED, row.hospital_id) for row in rows]
            await self._update_many(activated, creation_batch_id=creation_batch_id, count=count)
            if count is not None and count != len(rows):
                # More or fewer than ours: look, delete copies nobody claims, and see
                # which rows are really there. An answer without a count says "all".
                await self._try_reconcile(creation_batch_id)
            return

    # -- calls -----------------------------------------------------------------------

    async def call(
        self, kind: CallKind, send: Callable[[], Awaitable[T]], *, idempotent: bool = False
    ) -> T:
        return await self.calls.call(kind, send, idempotent=idempotent, stop=self._stop)

    # -- saving ----------------------------------------------------------------------

    async def _set(
        self,
        number: int,
        state: RowState,
        event: EventType | None,
        code: str | None,
        error: DirectoryError | None,
        **changes: object,
    ) -> None:
        row = attrs.evolve(
            self.rows[number],
            state=state,
            error_code=code,
            error=error.message if error is not None else None,
            **changes,  # type: ignore[arg-type]
        )
        await self._update(row, event)

    async def _update(self, row: RowOutcome, event: EventType | None = None) -> None:
        old = self.rows[row.row]
        self.rows[row.row] = row
        self.tally.move(old.state, row.state)
        drafts = []
        if event is not None:
            drafts.append(
                EventDraft(
                    type=event,
                    progress=self.tally.progress(),
                    row=row.row,
                    hospital_id=row.hospital_id,
                    creation_batch_id=row.creation_batch_id,
                    error_code=row.error_code,
                    error=row.error,
                )
            )
        await self.store.save(self.job.id, [row], drafts)

    async def _update_many(
        self, rows: Sequence[RowOutcome], *, creation_batch_id: UUID, count: int | None
    ) -> None:
        for row in rows:
            self.tally.move(self.rows[row.row].state, row.state)
            self.rows[row.row] = row
        draft = EventDraft(
            type=EventType.BATCH_ACTIVATED,
            progress=self.tally.progress(),
            creation_batch_id=creation_batch_id,
            count=count,
        )
        await self.store.save(self.job.id, rows, [draft])


def _batch_full(error: RejectedError) -> bool:
    return error.status == 400 and "exceed" in error.message.lower()
