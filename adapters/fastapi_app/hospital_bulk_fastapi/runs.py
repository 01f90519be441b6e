"""Jobs run in the service's task group, never inside a request.

A request only waits for its job, with a timeout: a client that hangs up or
times out leaves the job running, and at shutdown the service cancels the task
group, which the processor records as ``interrupted`` (resumable).
"""

from __future__ import annotations

import logging

import anyio
from anyio.abc import TaskGroup

from hospital_bulk import BulkProcessor, HospitalBulkError, JobSummary

log = logging.getLogger(__name__)


class Run:
    """One run of one job in this process: its outcome once ``done`` is set."""

    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        self.done = anyio.Event()
        self.summary: JobSummary | None = None
        self.error: Exception | None = None

    async def wait(self, seconds: float) -> bool:
        """Wait up to ``seconds``; whether the run is over."""
        with anyio.move_on_after(seconds):
            await self.done.wait()
        return self.done.is_set()


class JobRunner:
    """Starts runs in one task group and finds the ones still going, by job id."""

    def __init__(self, processor: BulkProcessor, group: TaskGroup) -> None:
        self._processor = processor
        self._group = group
        self._runs: dict[str, Run] = {}

    def get(self, job_id: str) -> Run | None:
        """The run of ``job_id`` going on in this process, if any."""
        return self._runs.get(job_id)

    def start(self, job_id: str, *, resume: bool = False) -> Run:
        """Run (or resume) ``job_id`` in the background; if it already runs here, that run.

        Checking and registering happen without an await between them, so two requests
        of this process can never start the same job twice.
        """
        run = self._runs.get(job_id)
        if run is None:
            run = self._runs[job_id] = Run(job_id)
            self._group.start_soon(self._drive, run, resume, name=f"job {job_id}")
        return run

    async def _drive(self, run: Run, resume: bool) -> None:
        processor = self._processor
        try:
            if resume:
                run.summary = await processor.resume(run.job_id)
            else:
                run.summary = await processor.run(run.job_id)
        except HospitalBulkError as error:
            # A conflict (another process took the job) or a store failure: the waiting
            # request reports it; the job's state says the rest.
            run.error = error
        except Exception as error:
            # A bug must not take the service's task group, and every other job, down.
            log.exception("job %s crashed", run.job_id)
            run.error = error
        finally:
            del self._runs[run.job_id]
            run.done.set()
