"""BulkProcessor: the public face of the engine."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager

import anyio
import attrs

from ._client import DirectoryClient, HttpDirectoryClient
from ._events import Event, EventDraft, EventType
from ._jobs import (
    FINISHED_STATES,
    RESUMABLE_STATES,
    Job,
    JobState,
    Progress,
    RowOutcome,
    RowState,
    batch_ids_for,
    new_job_id,
    utcnow,
)
from ._models import ValidationReport
from ._owners import new_owner_id, owner_is_dead
from ._pacing import CallKind, LocalRateGate, Pacer, RateGate
from ._runner import JobRun
from ._settings import ProcessorSettings
from ._store import JobStore
from ._summary import JobSummary
from .csv import CsvReader, CsvRow, Source
from .exceptions import HospitalBulkError, InvalidCsvError, JobConflictError, StoreError
from .stores.memory import MemoryStore


@attrs.frozen
class JobSnapshot:
    """A job with every row outcome: what a status view shows."""

    job: Job
    rows: tuple[RowOutcome, ...]

    def summary(self) -> JobSummary:
        return JobSummary.of(self.job, self.rows)


class BulkProcessor:
    """Validates CSV files, then creates and activates their hospitals exactly once.

    Pacing is shared by every job of one processor: create one per process.
    """

    def __init__(
        self,
        client: DirectoryClient | None = None,
        store: JobStore | None = None,
        settings: ProcessorSettings = ProcessorSettings(),
        *,
        rate_gate: RateGate | None = None,
    ) -> None:
        """``rate_gate`` shares rate accounting beyond this processor. By default a
        store shared by several processes (``RedisStore``) provides one, so they pace
        together; otherwise it lives in this processor's memory."""
        self._gate = rate_gate
        self.client: DirectoryClient = client if client is not None else HttpDirectoryClient()
        self.store: JobStore = store if store is not None else MemoryStore()
        self.settings = settings
        self._pacer: Pacer | None = None
        self._runs: dict[str, JobRun] = {}
        #: Who runs jobs here, in the store's eyes.
        self.owner_id = new_owner_id()

    # -- files -----------------------------------------------------------------------

    async def validate(self, source: Source) -> ValidationReport:
        """Check a file without creating anything."""
        report, _ = await self._read(source, keep_rows=False)
        return report

    async def submit(
        self,
        source: Source,
        *,
        file_name: str | None = None,
        idempotency_key: str | None = None,
    ) -> Job:
        """Validate a file and record it as a pending job.

        Raises :class:`InvalidCsvError` (with the report) when the file has errors.
        With an ``idempotency_key`` already used, returns that earlier job instead.
        """
        if idempotency_key is not None:
            existing = await self.store.find_job(idempotency_key)
            if existing is not None:
                return existing
        report, csv_rows = await self._read(source, keep_rows=True)
        if not report.valid or not csv_rows:
            raise InvalidCsvError(report)
        job_id = new_job_id()
        batch_ids = batch_ids_for(job_id, len(csv_rows), self.settings.batch_size)
        rows = [
            RowOutcome(
                row=csv_row.row,
                line=csv_row.line,
                record=csv_row.record,
                batch_id=batch_ids[index // self.settings.batch_size],
            )
            for index, csv_row in enumerate(csv_rows)
        ]
        now = utcnow()
        progress = Progress(total=len(rows))
        job = Job(
            id=job_id,
            state=JobState.PENDING,
            total_rows=len(rows),
            batch_ids=batch_ids,
            created_at=now,
            updated_at=now,
            progress=progress,
            file_name=file_name,
            idempotency_key=idempotency_key,
        )
        accepted = EventDraft(type=EventType.JOB_ACCEPTED, progress=progress, state=job.state)
        try:
            await self.store.add_job(job, rows, accepted)
        except StoreError:
            # Two uploads with one key raced (stores keep keys unique): the first wins.
            if idempotency_key is not None:
                existing = await self.store.find_job(idempotency_key)
                if existing is not None:
                    return existing
            raise
        return await self.store.get_job(job_id)

    # -- running ---------------------------------------------------------------------

    async def run(self, job_id: str) -> JobSummary:
        """Drive a pending job to a finished state and return its summary."""
        return await self._drive(job_id, frozenset({JobState.PENDING}))

    async def resume(self, job_id: str) -> JobSummary:
        """Run again what is not done: failed and unknown rows, unactivated batches."""
        return await self._drive(job_id, RESUMABLE_STATES)

    async def cancel(self, job_id: str) -> Job:
        """Stop dispatching creates; in-flight ones finish and the job stays resumable."""
        run = self._runs.get(job_id)
        if run is not None:
            run.stop()
            return await self.store.get_job(job_id)
        job = await self.store.get_job(job_id)
        if job.state.is_active:
            raise JobConflictError(job_id, job.state, "cancel it here: another process runs it")
        job = await self.store.transition(
            job_id,
            JobState.CANCELLED,
            EventDraft(
                type=EventType.JOB_STATE_CHANGED, progress=job.progress, state=JobState.CANCELLED
            ),
            allowed=frozenset({JobState.PENDING}),
        )
        finished = EventDraft(
            type=EventType.JOB_FINISHED, progress=job.progress, state=JobState.CANCELLED
        )
        await self.store.save(job_id, (), [finished])
        return await self.store.get_job(job_id)

    async def delete(self, job_id: str) -> Job:
        """Delete every upstream batch of the job (already gone is fine); the job shows deleted."""
        job = await self.store.get_job(job_id)
        if job.state.is_active or job_id in self._runs:
            raise JobConflictError(job_id, job.state, "delete it while it runs")
        job = await self.store.transition(
            job_id,
            JobState.DELETED,
            EventDraft(
                type=EventType.JOB_STATE_CHANGED, progress=job.progress, state=JobState.DELETED
            ),
        )
        rows = await self.store.get_rows(job_id)
        run = self._new_run(job, rows)
        for batch_id in job.batch_ids:
            await run.call(
                CallKind.OTHER,
                functools.partial(self.client.delete_batch, batch_id),
                idempotent=True,
            )
        return job

    # -- reading ---------------------------------------------------------------------

    async def get(self, job_id: str) -> JobSnapshot:
        job = await self.store.get_job(job_id)
        rows = await self.store.get_rows(job_id)
        return JobSnapshot(job, tuple(rows))

    async def list_jobs(self, *, limit: int = 50, offset: int = 0) -> list[Job]:
        return await self.store.list_jobs(limit=limit, offset=offset)

    async def watch(self, job_id: str, after: int = 0) -> AsyncIterator[Event]:
        """Every event after sequence ``after``: the stored ones, then live ones.

        Ends once the job is neither running nor pending and every event is handed out
        — after ``job.finished`` when the job finished. Reads go to the store, so a slow
        watcher never slows the run.
        """
        last: Event | None = None
        quiet_polls = 0
        while True:
            events = await self.store.read_events(job_id, after, wait=self.settings.watch_poll)
            for event in events:
                yield event
                after, last = event.seq, event
            quiet_polls = 0 if events else quiet_polls + 1
            if events and events[-1].type not in _SETTLING:
                continue
            job = await self.store.get_job(job_id)
            settled = not job.state.is_active and job.state is not JobState.PENDING
            if not settled or after < job.last_seq:
                continue
            # A finished job's final state change and its job.finished are two writes:
            # wait for the second, unless a crash between them means it never comes.
            if _finish_follows(last) and quiet_polls < _FINISH_GRACE_POLLS:
                continue
            return

    @asynccontextmanager
    async def process(
        self, source: Source, *, file_name: str | None = None
    ) -> AsyncIterator[ProcessingJob]:
        """Submit a file and run it in a task group this context owns.

        ::

            async with processor.process(path) as job:
                async for event in job.events():
                    ...
            print(job.summary)
        """
        job = await self.submit(source, file_name=file_name)
        processing = ProcessingJob(self, job)
        async with anyio.create_task_group() as group:
            group.start_soon(processing._run)
            yield processing

    async def aclose(self) -> None:
        await self.store.aclose()
        close = getattr(self.client, "aclose", None)
        if close is not None:
            await close()

    # -- internals -------------------------------------------------------------------

    async def _read(
        self, source: Source, *, keep_rows: bool
    ) -> tuple[ValidationReport, list[CsvRow]]:
        def read() -> tuple[ValidationReport, list[CsvRow]]:
            reader = CsvReader(source, self.settings.csv)
            rows: list[CsvRow] = []
            for chunk in reader:
                if keep_rows:
                    rows.extend(chunk)
            return reader.report, rows

        return await anyio.to_thread.run_sync(read)

    @property
    def pacer(self) -> Pacer:
        # Built on first use: anyio primitives need a running event loop.
        if self._pacer is None:
            self._pacer = Pacer(concurrency=self.settings.concurrency, gate=self._rate_gate())
        return self._pacer

    def _rate_gate(self) -> RateGate:
        """The gate given, else the store's shared one (a store several processes use
        offers ``rate_gate``: all of them then pace together), else a local one."""
        if self._gate is not None:
            return self._gate
        limits = (
            self.settings.create_limit,
            self.settings.other_limit,
            self.settings.unpaced_throttle_pause,
        )
        shared = getattr(self.store, "rate_gate", None)
        if callable(shared):
            gate: RateGate = shared(*limits)
            return gate
        return LocalRateGate(create_limit=limits[0], other_limit=limits[1], unpaced_pause=limits[2])

    def _new_run(
        self, job: Job, rows: Sequence[RowOutcome], *, last_activity: float | None = None
    ) -> JobRun:
        return JobRun(
            job,
            rows,
            client=self.client,
            store=self.store,
            pacer=self.pacer,
            policy=self.settings.retry,
            on_throttle=self._broadcast_throttle,
            last_activity=last_activity,
        )

    async def _broadcast_throttle(self, delay: float) -> None:
        # A 429 pauses every job of this processor, so every running job says so.
        for run in list(self._runs.values()):
            await run.emit(EventType.THROTTLE_CHANGED, delay=round(delay, 3))

    async def recover(self) -> list[Job]:
        """Mark jobs whose runner died as interrupted (resumable); returns them.

        A runner is dead when its lease expired, or at once when it ran on this host
        and its process is gone (a restart after a crash).
        """
        recovered = []
        now = utcnow()
        for job in await self.store.active_jobs():
            if job.id in self._runs:
                continue
            if not (job.lease_expired(now) or owner_is_dead(job.owner)):
                continue
            draft = EventDraft(
                type=EventType.JOB_STATE_CHANGED, progress=job.progress, state=JobState.INTERRUPTED
            )
            try:
                # Named as the dead owner: if it was alive after all and renewed, the
                # compare-and-set still holds only for that same owner.
                job = await self.store.transition(
                    job.id, JobState.INTERRUPTED, draft, owner=job.owner
                )
            except JobConflictError:
                continue  # another process recovered it first
            await self._mark_in_flight_unknown(job)
            recovered.append(job)
        return recovered

    async def _mark_in_flight_unknown(self, job: Job) -> None:
        """Rows whose create was sent but not answered may have landed: say so.

        Resume reconciles them by listing their batch before sending anything again.
        """
        rows = await self.store.get_rows(job.id)
        in_flight = [
            attrs.evolve(row, state=RowState.UNKNOWN, error_code="interrupted")
            for row in rows
            if row.state is RowState.PENDING and row.attempts > 0
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
                batch_id=row.batch_id,
                error_code=row.error_code,
            )
            for row in in_flight
        ]
        await self.store.save(job.id, in_flight, drafts)

    async def _drive(self, job_id: str, allowed: frozenset[JobState]) -> JobSummary:
        job = await self.store.get_job(job_id)
        idle = (utcnow() - job.updated_at).total_seconds()
        job = await self.store.transition(
            job_id,
            JobState.RUNNING,
            EventDraft(
                type=EventType.JOB_STATE_CHANGED, progress=job.progress, state=JobState.RUNNING
            ),
            allowed=allowed,
            owner=self.owner_id,
            lease=self.settings.lease_ttl,
        )
        rows = await self.store.get_rows(job_id)
        run = self._new_run(job, rows, last_activity=max(0.0, idle))
        self._runs[job_id] = run
        try:
            async with anyio.create_task_group() as group:
                group.start_soon(self._keep_lease, run, group.cancel_scope)
                await run.create_all()
                if not run.stop_requested:
                    await self._move(run, JobState.ACTIVATING)
                    await run.activate_all()
                # Stop renewing before the final move: after it, a renewal would fail
                # and look like a takeover.
                group.cancel_scope.cancel()
            if run.lease_lost:
                raise JobConflictError(job_id, "running", "finish it: another process took it over")
            final = run.final_state()
            await self._move(run, final)
            await run.emit(EventType.JOB_FINISHED, state=final)
        except BaseException as error:
            # Cancelled from outside (shutdown) or crashed: leave it resumable, with the
            # rows whose create went unanswered marked unknown.
            with anyio.CancelScope(shield=True):
                await self._move(run, JobState.INTERRUPTED, quiet=True)
                if not run.lease_lost:
                    await self._mark_in_flight_unknown(run.job)
            plain = _library_error(error)
            if plain is error:
                raise
            raise plain from error
        finally:
            del self._runs[job_id]
        return (await self.get(job_id)).summary()

    async def _keep_lease(self, run: JobRun, work: anyio.CancelScope) -> None:
        ttl = self.settings.lease_ttl
        while True:
            await anyio.sleep(ttl / 3)
            if not await self.store.renew_lease(run.job.id, self.owner_id, ttl):
                # Someone declared us dead and may be running the job: stop at once.
                run.lease_lost = True
                run.stop()
                work.cancel()
                return

    async def _move(self, run: JobRun, state: JobState, *, quiet: bool = False) -> None:
        draft = EventDraft(
            type=EventType.JOB_STATE_CHANGED, progress=run.tally.progress(), state=state
        )
        try:
            run.job = await self.store.transition(
                run.job.id, state, draft, owner=self.owner_id, lease=self.settings.lease_ttl
            )
        except JobConflictError:
            if not quiet:
                raise


#: Events after which a watcher checks whether the job has settled.
_SETTLING = frozenset({EventType.JOB_FINISHED, EventType.JOB_STATE_CHANGED})
#: Quiet polls a watcher waits for a job.finished announced by a final state change.
_FINISH_GRACE_POLLS = 3


def _library_error(error: BaseException) -> BaseException:
    """Task groups wrap errors in groups: hand callers the library error inside, so they
    can catch ``HospitalBulkError`` rather than an ``ExceptionGroup`` (several rows
    failing on one broken store make a group of the same error)."""
    if not isinstance(error, BaseExceptionGroup):
        return error
    leaves = list(_leaves(error))
    if len(leaves) == 1:
        return leaves[0]
    ours = [leaf for leaf in leaves if isinstance(leaf, HospitalBulkError)]
    if ours and all(isinstance(leaf, Exception) for leaf in leaves):
        return ours[0]
    return error


def _leaves(error: BaseException) -> Iterator[BaseException]:
    if isinstance(error, BaseExceptionGroup):
        for inner in error.exceptions:
            yield from _leaves(inner)
    else:
        yield error


def _finish_follows(event: Event | None) -> bool:
    return (
        event is not None
        and event.type is EventType.JOB_STATE_CHANGED
        and event.state in FINISHED_STATES
    )


class ProcessingJob:
    """A job running inside :meth:`BulkProcessor.process`."""

    def __init__(self, processor: BulkProcessor, job: Job) -> None:
        self.processor = processor
        self.job = job
        self.summary: JobSummary | None = None
        self._done = anyio.Event()

    def events(self, after: int = 0) -> AsyncIterator[Event]:
        return self.processor.watch(self.job.id, after)

    async def wait(self) -> JobSummary:
        await self._done.wait()
        assert self.summary is not None
        return self.summary

    async def _run(self) -> None:
        try:
            self.summary = await self.processor.run(self.job.id)
        finally:
            self._done.set()
