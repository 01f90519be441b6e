"""A run: one execution of a job in this process, and the handle its callers hold.

:meth:`BulkProcessor.start <hospital_bulk.BulkProcessor.start>` moves the job to
``running`` (a compare-and-set: one run at a time, whatever the process) and hands
back a :class:`Run` that every caller uses alike — the service's requests, the
command line's progress bar, a library user's script: wait for it, read its
summary or error, follow its events, cancel it.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import anyio

from ._calls import describe
from ._events import Event, EventDraft, EventType
from ._jobs import Job, JobState
from ._leases import keep_lease, mark_in_flight_unknown
from ._store import JobStore
from ._summary import JobSummary
from ._work import JobWork
from .exceptions import DirectoryError, HospitalBulkError, JobConflictError

log = logging.getLogger("hospital_bulk")


class Run:
    """One run of one job in this process.

    ``summary`` and ``error`` are set once the run is over (``done``): the summary
    of the job as the run left it, and the error that ended it early, if any.
    """

    def __init__(self, job_id: str, watch: Callable[[str, int], AsyncIterator[Event]]) -> None:
        self.job_id = job_id
        #: The job was not pending: this run resumes it.
        self.resumed = False
        #: Where this run's events start: after this sequence number.
        self.after = 0
        self.summary: JobSummary | None = None
        self.error: Exception | None = None
        self._watch = watch
        self._done = anyio.Event()
        self._scope = anyio.CancelScope()
        self._queue_scope = anyio.CancelScope()  # the wait for a job slot
        self._cancel_requested = False
        self._interrupt_requested = False
        self._work: JobWork | None = None
        self._directory_changed: Callable[[DirectoryError | None, float], Awaitable[None]] | None
        self._directory_changed = None

    @property
    def done(self) -> bool:
        return self._done.is_set()

    async def wait(self) -> JobSummary:
        """The job's summary once the run is over; raises the error that ended it."""
        await self._done.wait()
        if self.error is not None:
            raise self.error
        assert self.summary is not None
        return self.summary

    def cancel(self, *, now: bool = False) -> None:
        """Send no more creates: those in flight finish and the job ends ``cancelled``.

        ``now`` stops at once instead: the job ends ``interrupted``, with the creates
        in flight marked ``unknown`` for a resume to check.
        """
        self._cancel_requested = True
        self._queue_scope.cancel()  # a queued job never starts
        if self._work is not None:
            self._work.stop()
        if now:
            self._scope.cancel()

    def interrupt(self) -> None:
        """Stop for a shutdown: send no more creates (nor activations not yet begun);
        those in flight finish, and the job ends ``interrupted``, resumable, rather
        than ``cancelled`` (unless it was complete by then).

        Follow with ``cancel(now=True)`` once the creates in flight had long enough.
        """
        self._interrupt_requested = True
        self.cancel()

    async def stopped(self) -> None:
        """Return once the run is over, however it ended (:meth:`wait` raises its error)."""
        await self._done.wait()

    def events(self) -> AsyncIterator[Event]:
        """This run's events, to its end: from its move to ``running``, or for a job's
        first run from the job's acceptance."""
        return self._watch(self.job_id, self.after)

    async def announce_throttle(self, delay: float) -> None:
        """Tell this run's watchers that a 429 pauses every call (``0``: it is over)."""
        if self._work is not None:
            await self._work.announce_throttle(delay)

    async def announce_directory(self, error: DirectoryError | None, delay: float) -> None:
        """The directory is unavailable (``error``, next probe in ``delay`` s) or, with
        ``None``, answers again: the job waits for it, or goes on."""
        if self._directory_changed is None:
            return
        try:
            await self._directory_changed(error, delay)
        except HospitalBulkError:
            # Heard by a call of any job of this processor: it must not fail that one.
            log.warning(
                "job %s: could not record the directory's state", self.job_id, exc_info=True
            )

    def _began(self, job: Job, *, resumed: bool) -> None:
        """The job is ours: ``job`` as the move to ``running`` left it."""
        self.resumed = resumed
        # A first run's story starts with the job's acceptance.
        self.after = job.last_seq - 1 if resumed else 0

    def _refused(self, error: BaseException) -> None:
        """The job could not be started: whoever waits for this run hears why."""
        if isinstance(error, Exception):
            self.error = error
        self._done.set()

    def _started(self, work: JobWork) -> None:
        self._work = work
        if self._cancel_requested:
            work.stop()


async def interrupt_all(runs: Callable[[], list[Run]], *, grace: float) -> list[Run]:
    """Stop every run ``runs()`` lists for a shutdown; returns them once all are over.

    No more creates are sent; those in flight get ``grace`` seconds to finish, then
    the runs still going stop at once (their unanswered creates marked ``unknown``).
    Runs started meanwhile are stopped too.
    """
    stopping = runs()
    for run in stopping:
        run.interrupt()
    with anyio.move_on_after(grace):
        for run in stopping:
            await run.stopped()
    while late := [run for run in runs() if not run.done]:
        for run in late:
            run.cancel(now=True)
            if run not in stopping:
                stopping.append(run)
        for run in late:
            await run.stopped()
    return stopping


async def wait_in_queue(
    run: Run, slots: anyio.CapacityLimiter, *, store: JobStore, owner: str, lease_ttl: float
) -> Job | None:
    """Wait, queued, for one of the processor's job slots while keeping the job's lease;
    the job as running once the slot is ours. ``None`` when the run ended in the queue:
    cancelled (the job ends ``cancelled``), or taken over or failed (``run.error``)."""
    got = lost = False
    try:
        with run._queue_scope:
            async with anyio.create_task_group() as group:

                async def lease() -> None:
                    nonlocal lost
                    await keep_lease(store, run.job_id, owner, lease_ttl)
                    lost = True
                    run._queue_scope.cancel()

                group.start_soon(lease)
                await slots.acquire_on_behalf_of(run)
                got = True
                group.cancel_scope.cancel()
        if lost:
            run.error = JobConflictError(run.job_id, "queued", "run it: another process took it")
        elif got and not run._cancel_requested:
            return await store.transition(
                run.job_id, JobState.RUNNING, owner=owner, lease=lease_ttl
            )
        elif run._interrupt_requested:
            # A shutdown: the job never started, and is resumable.
            await store.transition(run.job_id, JobState.INTERRUPTED, owner=owner)
        elif run._cancel_requested:
            job = await store.get_job(run.job_id)
            finished = EventDraft(EventType.JOB_FINISHED, job.progress, state=JobState.CANCELLED)
            await store.transition(run.job_id, JobState.CANCELLED, then=(finished,), owner=owner)
    except HospitalBulkError as error:
        run.error = error
    except BaseException:
        # Cancelled from outside (shutdown): the job never started, and is resumable.
        with anyio.CancelScope(shield=True):
            await _interrupt(store, run.job_id, owner)
        if got:
            slots.release_on_behalf_of(run)
        raise
    if got:
        slots.release_on_behalf_of(run)
    return None


async def finish_run(run: Run, summarize: Callable[[], Awaitable[JobSummary]]) -> None:
    """The run is over (or ended before it started: see :func:`wait_in_queue`): its
    summary from the store, then tell its waiters."""
    with anyio.CancelScope(shield=True):
        try:
            run.summary = await summarize()
        except HospitalBulkError as error:
            run.error = run.error or error
        run._done.set()


async def execute(
    run: Run,
    load: Callable[[], Awaitable[JobWork]],
    *,
    store: JobStore,
    owner: str,
    lease_ttl: float,
    summarize: Callable[[], Awaitable[JobSummary]],
) -> None:
    """Carry ``run`` out: ``load`` builds its work once the job is ours. Never raises
    but cancellation: what ends the run is kept as ``run.error``."""
    try:
        with run._scope:
            await _carry_out(run, load, store=store, owner=owner, lease_ttl=lease_ttl)
    except HospitalBulkError as error:
        # A conflict (another process took the job) or a store failure: the job's
        # state says the rest.
        run.error = error
    except Exception as error:
        # A bug must not take the caller's task group, and every other job, down.
        log.exception("job %s crashed", run.job_id)
        run.error = error
    finally:
        await finish_run(run, summarize)


async def _carry_out(
    run: Run,
    load: Callable[[], Awaitable[JobWork]],
    *,
    store: JobStore,
    owner: str,
    lease_ttl: float,
) -> None:
    work: JobWork | None = None
    # Moves of the job's state come from its own steps and from outage notices heard
    # by any call: one at a time, and none once the job is over.
    moving = anyio.Lock()
    phase = JobState.RUNNING  # where the job goes back to when the directory answers
    waiting = over = False

    async def move(state: JobState, *, then: tuple[EventDraft, ...] = ()) -> None:
        nonlocal phase, over
        assert work is not None
        async with moving:
            if state.is_active:
                phase = state
                if waiting:
                    return  # the job shows that it waits; it moves on once the directory answers
            over = not state.is_active
            progress = work.tally.progress()
            work.job = await store.transition(
                run.job_id, state, progress, then=then, owner=owner, lease=lease_ttl
            )

    async def directory_changed(error: DirectoryError | None, delay: float) -> None:
        nonlocal waiting
        if work is None:
            return
        async with moving:
            if over or (error is None and not waiting):
                return
            progress = work.tally.progress()
            if error is None:
                log.info("job %s: the directory answers again", run.job_id)
                state, draft = phase, EventDraft(EventType.DIRECTORY_AVAILABLE, progress)
            else:
                draft = EventDraft(
                    EventType.DIRECTORY_UNAVAILABLE,
                    progress,
                    error=describe(error),
                    delay=round(delay, 3),
                )
                if waiting:
                    await store.save(run.job_id, (), [draft])
                    return
                log.warning(
                    "job %s waits for the directory (%s); next try in %.1f s",
                    run.job_id,
                    describe(error),
                    delay,
                )
                state = JobState.WAITING_FOR_DIRECTORY
            work.job = await store.transition(
                run.job_id, state, progress, then=(draft,), owner=owner, lease=lease_ttl
            )
            waiting = error is not None

    run._directory_changed = directory_changed
    try:
        work = await load()
        run._started(work)
        async with anyio.create_task_group() as group:

            async def watch_lease() -> None:
                await keep_lease(store, run.job_id, owner, lease_ttl)
                # The renewal failed: someone declared us dead and may be running the
                # job. Stop at once.
                assert work is not None
                work.lease_lost = True
                work.stop()
                group.cancel_scope.cancel()

            group.start_soon(watch_lease)
            await work.create_all()
            if not work.stop_requested:
                await move(JobState.ACTIVATING)
                await work.activate_all()
            # Stop renewing before the final move: after it, a renewal would fail and
            # look like a takeover.
            group.cancel_scope.cancel()
        if work.lease_lost:
            raise JobConflictError(run.job_id, "running", "finish it: another process took it over")
        final = work.final_state()
        if final is JobState.INTERRUPTED or (
            run._interrupt_requested and final is not JobState.COMPLETED
        ):
            # Stopped for a shutdown, or past an outage's deadline: resumable, and no
            # job.finished (it is not over).
            await move(JobState.INTERRUPTED)
            await mark_in_flight_unknown(store, work.job)
            return
        finished = EventDraft(EventType.JOB_FINISHED, work.tally.progress(), state=final)
        await move(final, then=(finished,))
    except BaseException as error:
        # Cancelled from outside (shutdown, a hard stop) or crashed: leave the job
        # resumable, with the rows whose create went unanswered marked unknown.
        with anyio.CancelScope(shield=True):
            if work is None:
                await _interrupt(store, run.job_id, owner)
            elif not work.lease_lost:
                with contextlib.suppress(JobConflictError):
                    await move(JobState.INTERRUPTED)
                await mark_in_flight_unknown(store, work.job)
        plain = _library_error(error)
        if plain is error:
            raise
        raise plain from error


async def _interrupt(store: JobStore, job_id: str, owner: str) -> None:
    """The job became ours but its work could not be loaded: hand it back, resumable."""
    try:
        await store.transition(job_id, JobState.INTERRUPTED, owner=owner)
    except HospitalBulkError:
        log.warning("job %s could not be marked interrupted", job_id, exc_info=True)


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
