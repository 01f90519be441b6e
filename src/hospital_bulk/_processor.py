"""BulkProcessor: the public face of the engine."""

from __future__ import annotations

import functools
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import attrs
from anyio.abc import TaskGroup

from ._calls import UpstreamCalls, rate_gate_for
from ._client import DirectoryClient, HttpDirectoryClient
from ._events import Event, EventDraft, EventType
from ._intake import Intake
from ._jobs import (
    TRANSITIONS,
    Job,
    JobState,
    utcnow,
)
from ._leases import orphans, recover
from ._models import ValidationReport
from ._owners import new_owner_id
from ._pacing import CallKind, Pacer, RateGate
from ._run import Run, execute, finish_run, interrupt_all, wait_in_queue
from ._settings import ProcessorSettings
from ._store import JobStore, follow
from ._summary import JobSnapshot, JobSummary
from ._work import JobWork
from .csv import CsvOptions, Source
from .exceptions import DirectoryError, DirectoryMismatchError, JobConflictError
from .stores.memory import MemoryStore


class BulkProcessor:
    """Validates CSV files, then creates and activates their hospitals exactly once.

    Pacing is shared by every job of one processor: create one per process. What you
    pass in (a client, a store) you close; what the processor made, :meth:`aclose`
    closes.
    """

    def __init__(
        self,
        client: DirectoryClient | None = None,
        store: JobStore | None = None,
        settings: ProcessorSettings = ProcessorSettings(),
        *,
        rate_gate: RateGate | None = None,
        directory: str | None = None,
    ) -> None:
        """``rate_gate`` shares rate accounting beyond this processor. By default a
        store shared by several processes (``SqliteStore``, ``RedisStore``) provides
        one, so they pace together; otherwise it lives in this processor's memory.

        ``directory`` names the directory the client reaches (by default an
        ``HttpDirectoryClient``'s base URL): jobs submitted here record it, and a job
        recorded with another one is refused (:class:`DirectoryMismatchError`).
        """
        self._owned_client = client is None
        self.client: DirectoryClient = client if client is not None else HttpDirectoryClient()
        if directory is None and isinstance(self.client, HttpDirectoryClient):
            directory = self.client.base_url
        self.directory = directory
        self.store: JobStore = store if store is not None else MemoryStore()
        self.settings = settings
        self._gate = rate_gate
        self._calls: UpstreamCalls | None = None
        self._slots: anyio.CapacityLimiter | None = None
        self._queued = 0  # runs started queued that wait for a job slot
        self._runs: dict[str, Run] = {}
        self._intake = Intake(self.store, settings, directory)
        #: Who runs jobs here, in the store's eyes.
        self.owner_id = new_owner_id()

    # -- files -----------------------------------------------------------------------

    async def validate(
        self, source: Source, *, encoding: str | None = None, delimiter: str | None = None
    ) -> ValidationReport:
        """Check a file without creating anything.

        ``encoding`` and ``delimiter`` override those of ``settings.csv`` (see
        :class:`CsvOptions`); an unknown encoding or an unusable delimiter is a
        :class:`ValueError`.
        """
        return await self._intake.validate(source, self.csv_options(encoding, delimiter))

    async def submit(
        self,
        source: Source,
        *,
        file_name: str | None = None,
        idempotency_key: str | None = None,
        encoding: str | None = None,
        delimiter: str | None = None,
    ) -> Job:
        """Validate a file and record it as a pending job.

        Raises :class:`InvalidCsvError` (with the report) when the file has errors.
        ``encoding`` and ``delimiter`` are as for :meth:`validate`.

        With an ``idempotency_key`` already used, returns that earlier job instead, when
        it was submitted from the same bytes with the same ``encoding`` and
        ``delimiter``; otherwise raises :class:`IdempotencyKeyReusedError`. Jobs stored
        before fingerprints were kept match any file.
        """
        options = self.csv_options(encoding, delimiter)
        return await self._intake.submit(
            source, options, file_name=file_name, idempotency_key=idempotency_key
        )

    def csv_options(self, encoding: str | None = None, delimiter: str | None = None) -> CsvOptions:
        """``settings.csv`` with this ``encoding`` and ``delimiter`` (``None`` keeps its own).

        Raises :class:`ValueError` for an unknown encoding or an unusable delimiter:
        adapters call it to check what they were given before reading a byte.
        """
        options = self.settings.csv
        if encoding is not None:
            options = attrs.evolve(options, encoding=encoding)
        if delimiter is not None:
            options = attrs.evolve(options, delimiter=delimiter)
        return options

    # -- running ---------------------------------------------------------------------

    async def start(self, job_id: str, task_group: TaskGroup) -> Run:
        """Start running the job in ``task_group`` and return its :class:`Run`.

        A pending job runs from the start; one that stopped (failed, cancelled,
        interrupted, completed with errors) resumes: failed and unknown rows are
        sent again (unknown ones after listing their batch), complete batches are
        activated. Raises :class:`JobConflictError` when the job runs already, here
        or elsewhere, or has nothing left to do.
        """
        run, job, idle = await self._begin(job_id)
        task_group.start_soon(self._execute, run, job, idle, name=f"job {job_id}")
        return run

    async def run(self, job_id: str) -> JobSummary:
        """Start the job (see :meth:`start`) and return its summary once it is over."""
        run, job, idle = await self._begin(job_id)
        async with anyio.create_task_group() as group:
            group.start_soon(self._execute, run, job, idle)
        return await run.wait()

    def run_of(self, job_id: str) -> Run | None:
        """The run of ``job_id`` going on in this process, if any."""
        return self._runs.get(job_id)

    @asynccontextmanager
    async def process(
        self,
        source: Source,
        *,
        file_name: str | None = None,
        encoding: str | None = None,
        delimiter: str | None = None,
    ) -> AsyncIterator[Run]:
        """Submit a file (see :meth:`submit`) and run it in a task group this context owns.

        ::

            async with processor.process(path) as run:
                async for event in run.events():
                    ...
            print(run.summary)
        """
        job = await self.submit(source, file_name=file_name, encoding=encoding, delimiter=delimiter)
        async with anyio.create_task_group() as group:
            yield await self.start(job.id, group)

    async def cancel(self, job_id: str) -> Job:
        """Stop dispatching creates; in-flight ones finish and the job stays resumable."""
        run = self._runs.get(job_id)
        if run is not None:
            run.cancel()
            return await self.store.get_job(job_id)
        job = await self.store.get_job(job_id)
        if job.state.is_active:
            raise JobConflictError(job_id, job.state, "cancel it here: another process runs it")
        finished = EventDraft(EventType.JOB_FINISHED, job.progress, state=JobState.CANCELLED)
        return await self.store.transition(
            job_id,
            JobState.CANCELLED,
            then=(finished,),
            allowed=frozenset({JobState.PENDING}),
        )

    async def delete(self, job_id: str) -> Job:
        """Delete every upstream batch of the job (already gone is fine); the job shows deleted."""
        job = await self.store.get_job(job_id)
        self._check_directory(job)
        if job.state.is_active or job_id in self._runs:
            raise JobConflictError(job_id, job.state, "delete it while it runs")
        job = await self.store.transition(job_id, JobState.DELETED)
        for creation_batch_id in job.creation_batch_ids:
            delete = functools.partial(self.client.delete_batch, creation_batch_id)
            await self.calls.call(CallKind.OTHER, delete, idempotent=True)
        return job

    async def recover(self) -> list[Job]:
        """Mark jobs whose runner died as interrupted (resumable); returns them."""
        return await recover(self.store, running_here=set(self._runs))

    async def adopt_orphans(self, task_group: TaskGroup) -> list[Run]:
        """Start in ``task_group`` the jobs nobody runs that should run: returns their runs.

        After :meth:`recover`, these are the ``interrupted`` jobs (a shutdown, a crash,
        a hard stop left them resumable) and the ``pending`` jobs unchanged for longer
        than ``lease_ttl`` (accepted by a process that died before starting them). A
        job another process starts first is passed by. The rule: ``_leases.orphans``.
        """
        await self.recover()
        runs = []
        for job_id in await orphans(self.store, self.settings.lease_ttl, set(self._runs)):
            try:
                runs.append(await self.start(job_id, task_group))
            except JobConflictError:
                continue  # started elsewhere meanwhile, or nothing left to do
        return runs

    async def interrupt_runs(self, *, grace: float) -> list[Run]:
        """Stop every run of this processor for a shutdown; returns them once all are over.

        No more creates are sent; those in flight get ``grace`` seconds to finish,
        then the runs still going stop at once (their unanswered creates marked
        ``unknown``). Every job not complete by then ends ``interrupted``, resumable
        (see :meth:`adopt_orphans`). Runs started meanwhile are stopped too.
        """
        return await interrupt_all(lambda: list(self._runs.values()), grace=grace)

    # -- reading ---------------------------------------------------------------------

    async def get(self, job_id: str) -> JobSnapshot:
        job = await self.store.get_job(job_id)
        rows = await self.store.get_rows(job_id)
        return JobSnapshot(job, tuple(rows))

    async def get_job(self, job_id: str) -> Job:
        """The job without its rows: cheaper than :meth:`get`."""
        return await self.store.get_job(job_id)

    async def list_jobs(self, *, limit: int = 50, offset: int = 0) -> list[Job]:
        return await self.store.list_jobs(limit=limit, offset=offset)

    async def watch(self, job_id: str, after: int = 0) -> AsyncIterator[Event]:
        """Every event after sequence ``after``: the stored ones, then live ones.

        Ends once the job has settled (neither running nor pending) and every event
        is handed out: a final state is written with its ``job.finished``, so the
        last event seen is that one. Reads go to the store, so a slow watcher never
        slows the run.
        """
        async for event in follow(self.store, job_id, after, poll=self.settings.watch_poll):
            yield event

    async def ping(self) -> None:
        """Raise :class:`StoreError` unless the store answers."""
        await self.store.ping()

    async def aclose(self) -> None:
        """Close what the processor made itself: a client or store passed in is the
        caller's to close."""
        if self._owned_client:
            await self.client.aclose()

    # -- internals -------------------------------------------------------------------

    async def _begin(self, job_id: str) -> tuple[Run, Job, float]:
        """Take the job for a run: its handle, the job as running, and the seconds
        its unanswered creates have had to land before this run."""
        if job_id in self._runs:
            raise JobConflictError(job_id, JobState.RUNNING, "start it: it runs in this process")
        # Registered before the first await: a second start here is refused, and a
        # caller finding the run through run_of() learns how the start went.
        run = self._runs[job_id] = Run(job_id, self.watch)
        try:
            before = await self.store.get_job(job_id)
            self._check_directory(before)
            if before.state.is_active:
                raise JobConflictError(job_id, before.state, "start it: it is running")
            if before.state not in TRANSITIONS[JobState.RUNNING]:
                raise JobConflictError(job_id, before.state, "run it: nothing is left to do")
            # A free job slot is taken now, unless jobs queued earlier wait for one;
            # otherwise the job waits its turn, queued.
            state = JobState.QUEUED
            if not self._queued:
                try:
                    self._job_slots.acquire_on_behalf_of_nowait(run)
                    state = JobState.RUNNING
                except anyio.WouldBlock:
                    pass
            if state is JobState.QUEUED:
                self._queued += 1
            try:
                job = await self.store.transition(
                    job_id, state, owner=self.owner_id, lease=self.settings.lease_ttl
                )
            except BaseException:
                if state is JobState.RUNNING:
                    self._job_slots.release_on_behalf_of(run)
                else:
                    self._queued -= 1
                raise
        except BaseException as error:
            del self._runs[job_id]
            run._refused(error)
            raise
        run._began(job, resumed=before.state is not JobState.PENDING)
        return run, job, max(0.0, (utcnow() - before.updated_at).total_seconds())

    def _check_directory(self, job: Job) -> None:
        """Refuse to send a job's calls anywhere but to the directory its rows went to."""
        mine, its = self.directory, job.directory
        if mine is not None and its is not None and mine != its:
            raise DirectoryMismatchError(job.id, job.state, its, mine)

    async def _execute(self, run: Run, job: Job, idle: float) -> None:
        started = time.monotonic()

        async def load() -> JobWork:
            rows = await self.store.get_rows(job.id)
            since = idle + time.monotonic() - started
            return JobWork(job, rows, calls=self.calls, store=self.store, last_activity=since)

        async def summarize() -> JobSummary:
            return (await self.get(job.id)).summary()

        owner, lease_ttl = self.owner_id, self.settings.lease_ttl
        slots = self._job_slots
        try:
            if job.state is JobState.QUEUED:
                try:
                    taken = await wait_in_queue(
                        run, slots, store=self.store, owner=owner, lease_ttl=lease_ttl
                    )
                except BaseException:
                    await finish_run(run, summarize)  # whoever waits for it hears
                    raise
                finally:
                    self._queued -= 1
                if taken is None:
                    await finish_run(run, summarize)
                    return
                job = taken
            try:
                await execute(
                    run,
                    load,
                    store=self.store,
                    owner=owner,
                    lease_ttl=lease_ttl,
                    summarize=summarize,
                )
            finally:
                slots.release_on_behalf_of(run)
        finally:
            del self._runs[job.id]

    @property
    def _job_slots(self) -> anyio.CapacityLimiter:
        """How many jobs run at once here; the others wait, queued, in order."""
        if self._slots is None:
            self._slots = anyio.CapacityLimiter(self.settings.max_jobs)
        return self._slots

    @property
    def calls(self) -> UpstreamCalls:
        # Built on first use: anyio primitives need a running event loop.
        if self._calls is None:
            gate = rate_gate_for(self.settings, self.store, self._gate)
            pacer = Pacer(concurrency=self.settings.concurrency, gate=gate)
            self._calls = UpstreamCalls(
                self.client,
                pacer,
                self.settings.retry,
                self._broadcast_throttle,
                self._broadcast_directory,
            )
        return self._calls

    async def _broadcast_throttle(self, delay: float) -> None:
        # A 429 pauses every job of this processor, so every running job says so.
        for run in list(self._runs.values()):
            await run.announce_throttle(round(delay, 3))

    async def _broadcast_directory(self, error: DirectoryError | None, delay: float) -> None:
        # Every job of this processor calls the same directory: all of them wait.
        for run in list(self._runs.values()):
            await run.announce_directory(error, delay)
