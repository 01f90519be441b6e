"""One run of one job: create every row exactly once, then activate its batches.

The rules (DESIGN.md, "Core concepts"):

- a create that provably never reached the upstream (not sent, 429) is retried
  with backoff; one that may have landed makes the row ``unknown`` and is never
  re-sent blindly: once it can no longer land (``RetryPolicy.landing_horizon``
  after its send) the batch is listed and matched as a multiset on (name,
  address, phone), extra copies found are deleted; meanwhile the batch waits
  aside and the other batches go on;
- an activated batch that had a create go unanswered is listed once more past
  that horizon, and the inactive copies found (late landings) are deleted;
- an unavailable directory stops nothing but the calls: they wait for it, and
  only past ``outage_deadline`` does the run give up, ``interrupted``;
- a batch is activated only when every one of its rows is confirmed created,
  because the upstream activates a batch once and all at once;
- every row change is saved with its event before the next step relies on it.
"""

from __future__ import annotations

import collections
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar
from uuid import UUID

import anyio
import attrs

from ._calls import StopRequestedError, UpstreamCalls
from ._events import EventDraft, EventType
from ._jobs import Job, JobState, RowOutcome, RowState
from ._models import Hospital
from ._pacing import CallKind
from ._rowbook import RowBook
from ._store import JobStore
from .exceptions import (
    DirectoryError,
    DirectoryUnavailableError,
    MaybeLandedError,
    NotSentError,
    RejectedError,
    ThrottledError,
)

T = TypeVar("T")
log = logging.getLogger("hospital_bulk")


class JobWork(RowBook):
    """The work of one run of a job in this process: its rows as they stand
    (:class:`RowBook`), and the steps that create, reconcile and activate them."""

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
        the time the creates it sent have had to land when they carry no send time
        (rows saved by a release before ``sent_at``)."""
        super().__init__(job, rows, store)
        self.calls = calls
        self.client = calls.client
        self.policy = calls.policy
        self.stop_requested = False
        self._stop = anyio.Event()
        self.lease_lost = False
        #: The directory stayed unavailable past the deadline: the run gave up.
        self.gave_up = False
        self._earlier_sends = time.time() - (last_activity or 0.0)
        #: Batches that had a create go unanswered, with the latest such send: once
        #: activated, they are listed again past the landing horizon.
        self._unanswered: dict[UUID, float] = {}
        for row in rows:
            if row.may_have_landed:
                self._note_unanswered(row)

    # -- the whole run ---------------------------------------------------------------

    async def create_all(self) -> None:
        """Create every batch's rows, a few batches at a time: enough to keep every
        concurrency slot busy, without thousands of tasks queueing for them. A batch
        left with rows that may have landed waits aside for their landing horizon,
        so the workers go on with the next batches meanwhile."""
        batches = iter(self.job.creation_batch_ids)
        size = max(len(ids) for ids in self._batches.values())
        workers = min(
            len(self.job.creation_batch_ids), -(-self.calls.pacer.concurrency // size) + 1
        )
        async with anyio.create_task_group() as aside:

            async def take_batches() -> None:
                for creation_batch_id in batches:  # shared: each batch is taken by one worker
                    if self._may_have_landed(creation_batch_id):
                        # Left so by an earlier run: listed first, failed rows retried.
                        aside.start_soon(self._finish_batch, creation_batch_id, _RETRY_ALL)
                    elif not await self._first_round(creation_batch_id):
                        aside.start_soon(self._finish_batch, creation_batch_id, _RETRY_MISSING)

            async with anyio.create_task_group() as group:
                for _ in range(workers):
                    group.start_soon(take_batches)

    async def activate_all(self) -> None:
        async with anyio.create_task_group() as group:
            for creation_batch_id in self.job.creation_batch_ids:
                group.start_soon(self._activate_batch, creation_batch_id)
        async with anyio.create_task_group() as group:
            for creation_batch_id in self._unanswered:
                group.start_soon(self._sweep, creation_batch_id)

    def stop(self) -> None:
        """Send no more creates; those in flight finish."""
        self.stop_requested = True
        self._stop.set()

    def give_up(self) -> None:
        """The directory stayed unavailable past the deadline: stop, resumable."""
        self.gave_up = True
        self.stop()

    def final_state(self) -> JobState:
        progress = self.tally.progress()
        if progress.activated == progress.total:
            return JobState.COMPLETED  # even if a cancel came too late to skip anything
        if self.gave_up:
            return JobState.INTERRUPTED
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

    def _may_have_landed(self, creation_batch_id: UUID) -> bool:
        return any(row.may_have_landed for row in self.batch_rows(creation_batch_id))

    async def _first_round(self, creation_batch_id: UUID) -> bool:
        """Send the batch's rows once (failed ones are retried once per run); ``False``
        when some may have landed, so the batch must be listed to be finished."""
        await self._send_rows(creation_batch_id, _RETRY_ALL)
        return self.stop_requested or not self._has_unknown(creation_batch_id)

    async def _finish_batch(self, creation_batch_id: UUID, retry: tuple[RowState, ...]) -> None:
        """List the batch and send what it proved missing (and the ``retry`` rows),
        a few rounds at most; later rounds send only what a listing proved missing."""
        for _ in range(self.policy.reconcile_rounds):
            if self.stop_requested or not await self._try_reconcile(creation_batch_id):
                return
            await self._send_rows(creation_batch_id, retry)
            retry = _RETRY_MISSING
            if not self._has_unknown(creation_batch_id):
                return

    async def _send_rows(self, creation_batch_id: UUID, states: tuple[RowState, ...]) -> None:
        todo = [row.row for row in self.batch_rows(creation_batch_id) if row.state in states]
        async with anyio.create_task_group() as group:
            for number in todo:
                group.start_soon(self._create_row, number)

    def _has_unknown(self, creation_batch_id: UUID) -> bool:
        return any(row.state is RowState.UNKNOWN for row in self.batch_rows(creation_batch_id))

    def _note_unanswered(self, row: RowOutcome) -> None:
        sent_at = row.sent_at if row.sent_at is not None else self._earlier_sends
        batch = row.creation_batch_id
        self._unanswered[batch] = max(self._unanswered.get(batch, sent_at), sent_at)

    async def _create_row(self, number: int) -> None:
        row = self.rows[number]

        async def send() -> Hospital:
            # Saved before sending: after a crash, attempts > 0 says "may have landed"
            # and sent_at until when.
            await self._update(self.rows[number].sent(time.time()))
            return await self.client.create_hospital(row.record, row.creation_batch_id)

        try:
            hospital = await self.call(CallKind.CREATE, send)
        except StopRequestedError:
            return
        except DirectoryUnavailableError:
            self.give_up()
        except MaybeLandedError as error:
            self._note_unanswered(self.rows[number])
            await self._set(number, RowState.UNKNOWN, EventType.ROW_UNKNOWN, "maybe_landed", error)
        except RejectedError as error:
            if _batch_full(error):
                # We never send more than 20 rows to a batch: a full one holds copies
                # that landed late. Listing it sorts them out.
                self._note_unanswered(self.rows[number])
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
        except DirectoryUnavailableError:
            self.give_up()
            return False
        except (DirectoryError, StopRequestedError):
            return False
        return True

    async def _reconcile(self, creation_batch_id: UUID) -> None:
        """Match the batch as listed upstream with our rows; unmatched rows become pending.

        Rows that know their hospital id keep it while it is listed. The other
        hospitals are matched as a multiset on (name, address, phone) against rows that
        may have landed, unknown ones first. What no row claims is an extra copy: deleted.
        """
        await self._settle(creation_batch_id)
        if self.stop_requested:
            return  # too early to list: the next run does it
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
        """Wait until the batch's unanswered creates can no longer land: a listing
        taken earlier could miss one, and we would send its row again."""
        sent = [
            row.sent_at if row.sent_at is not None else self._earlier_sends
            for row in self.batch_rows(creation_batch_id)
            if row.may_have_landed
        ]
        if sent:
            await self._until(max(sent) + self.policy.landing_horizon)

    async def _until(self, moment: float) -> None:
        """Sleep until Unix time ``moment``, or until the run is asked to stop."""
        wait = moment - time.time()
        if wait > 0:
            with anyio.move_on_after(wait):
                await self._stop.wait()

    async def _sweep(self, creation_batch_id: UUID) -> None:
        """Past the landing horizon of the batch's last unanswered create, list the
        activated batch once more and delete inactive copies: creates that landed
        after it was activated, which no row can claim."""
        if not all(row.state is RowState.ACTIVATED for row in self.batch_rows(creation_batch_id)):
            return  # not activated: the next run reconciles it before activating
        await self._until(self._unanswered[creation_batch_id] + self.policy.landing_horizon)
        if self.stop_requested:
            return
        ours = {row.hospital_id for row in self.batch_rows(creation_batch_id)}
        try:
            listing = await self.call(
                CallKind.OTHER, lambda: self.client.list_batch(creation_batch_id), idempotent=True
            )
            for hospital in listing:
                if not hospital.active and hospital.id not in ours:
                    await self.call(
                        CallKind.OTHER,
                        functools.partial(self.client.delete_hospital, hospital.id),
                        idempotent=True,
                    )
        except StopRequestedError:
            return  # stopped while the directory was away: the copy, if any, stays inactive
        except DirectoryError as error:
            # Every row is in: the job is complete. The copy, if any, stays inactive.
            log.warning(
                "job %s: batch %s not checked for late copies: %s",
                self.job.id,
                creation_batch_id,
                error.message,
            )

    # -- activation ------------------------------------------------------------------

    async def _activate_batch(self, creation_batch_id: UUID) -> None:
        for _ in range(self.policy.reconcile_rounds + 1):
            if self.stop_requested:
                return  # a stopped run begins no activation; the next run does it
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
            except DirectoryUnavailableError:
                self.give_up()
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


#: The rows a round sends: at first every row not created (failed ones are retried
#: once per run), after a listing only those it proved missing.
_RETRY_ALL = (RowState.PENDING, RowState.FAILED)
_RETRY_MISSING = (RowState.PENDING,)


def _batch_full(error: RejectedError) -> bool:
    return error.status == 400 and "exceed" in error.message.lower()
