"""Running a job in this process: the processor, the view, Ctrl-C, and what is left after.

Shared by ``import``, ``resume`` and ``demo``.
"""

from __future__ import annotations

import csv
import shlex
import signal
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import anyio
import attrs
from rich.console import Console
from rich.markup import escape

from hospital_bulk import (
    BulkProcessor,
    HospitalBulkError,
    JobSnapshot,
    JobState,
    JobStore,
    ProcessorSettings,
    RowOutcome,
    RowStatus,
    Run,
    reimportable_rows,
)
from hospital_bulk.stores import open_store

from .errors import CliError, Exit
from .output import SHOWN_ROWS, print_json, problem_rows, rows_table, summary_table, to_data
from .progress import JobView
from .settings import Upstream

#: Signals that stop a run cleanly: the first cancels, the second stops at once.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@asynccontextmanager
async def open_processor(
    store_url: str, upstream: Upstream | None = None
) -> AsyncIterator[BulkProcessor]:
    """A processor on the store at ``store_url``, closed on the way out.

    Without ``upstream`` the command only reads or cancels jobs: no call reaches a directory.
    """
    async with AsyncExitStack() as stack:
        client = upstream.client() if upstream is not None else None
        if client is not None:
            stack.push_async_callback(client.aclose)
        store = await _open_store(store_url)
        stack.push_async_callback(store.aclose)
        settings = upstream.processor_settings() if upstream is not None else ProcessorSettings()
        processor = BulkProcessor(client, store, settings)
        stack.push_async_callback(processor.aclose)
        try:
            yield processor
        finally:
            # Closing must finish even when Ctrl-C cancelled the command.
            with anyio.CancelScope(shield=True):
                await stack.aclose()


async def _open_store(url: str) -> JobStore:
    try:
        return await open_store(url)
    except ValueError as error:
        raise CliError(f"--store: {error}") from None
    except (ImportError, OSError) as error:
        raise CliError(f"cannot open the store {url!r}: {error}") from None


@attrs.define
class Outcome:
    snapshot: JobSnapshot
    #: Stopped by Ctrl-C (or SIGTERM) in this process.
    interrupted: bool = False

    @property
    def exit_code(self) -> Exit:
        state = self.snapshot.job.state
        if self.interrupted or state in (JobState.CANCELLED, JobState.INTERRUPTED):
            return Exit.INTERRUPTED
        if state is JobState.COMPLETED:
            return Exit.OK
        if state is JobState.COMPLETED_WITH_ERRORS:
            return Exit.PARTIAL
        return Exit.ERROR


async def drive(processor: BulkProcessor, job_id: str, *, view: JobView) -> Outcome:
    """Run the job (from the start, or resumed) while ``view`` shows its events; the
    first Ctrl-C cancels it cleanly, the second stops it at once."""
    stops = 0

    async def on_signals(run: Run) -> None:
        nonlocal stops
        with anyio.open_signal_receiver(*STOP_SIGNALS) as signals:
            async for _ in signals:
                stops += 1
                view.cancelling(hard=stops > 1)
                run.cancel(now=stops > 1)

    with view:
        async with anyio.create_task_group() as group:
            run = await processor.start(job_id, group)
            group.start_soon(on_signals, run)
            async for event in run.events():
                view.event(event)
            try:
                await run.wait()
            except HospitalBulkError:
                if not stops:
                    raise
            group.cancel_scope.cancel()
    return Outcome(await processor.get(job_id), interrupted=stops > 0)


# -- after the run ----------------------------------------------------------------------


def write_failed_rows(rows: Sequence[RowOutcome], path: Path) -> None:
    """An importable file: the three columns, then why each row was not created (ignored
    on import)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(["name", "address", "phone", "row", "error_code", "error"])
        for row in rows:
            record = row.record
            writer.writerow(
                [
                    record.name,
                    record.address,
                    record.phone or "",
                    row.row,
                    row.error_code or "",
                    row.error or "",
                ]
            )


def default_failed_path(source: Path) -> Path:
    return source.with_name(f"{source.stem}.failed.csv")


def resume_command(job_id: str, store_url: str, upstream: Upstream) -> str:
    return shlex.join(["hospital-bulk", "resume", job_id, "--store", store_url, *upstream.flags()])


@attrs.define
class Report:
    """Where the leftovers of a run go, and how to continue."""

    store_url: str
    upstream: Upstream
    failed_out: Path | None = None

    def finish(self, outcome: Outcome, *, json_lines: bool, console: Console) -> Exit:
        """Write the failed rows, then print the summary and the next step."""
        snapshot = outcome.snapshot
        job = snapshot.job
        summary = snapshot.summary()
        code = outcome.exit_code
        failed = reimportable_rows(snapshot.rows) if code is not Exit.INTERRUPTED else []
        written = None
        if failed and self.failed_out is not None:
            try:
                write_failed_rows(failed, self.failed_out)
            except OSError as error:
                console.print(f"[red]cannot write the failed rows:[/] {escape(str(error))}")
            else:
                written = self.failed_out
        resumable = job.state.is_resumable
        resume = resume_command(job.id, self.store_url, self.upstream) if resumable else None
        if json_lines:
            print_json(
                {
                    "type": "cli.summary",
                    "exit_code": int(code),
                    "failed_rows_file": None if written is None else str(written),
                    "resume_command": resume,
                    "summary": to_data(summary),
                }
            )
            return code
        console.print(summary_table(snapshot))
        problems = problem_rows(summary)
        if problems and code is not Exit.INTERRUPTED:
            console.print(rows_table(problems, title="Rows not activated", limit=SHOWN_ROWS))
            waiting = sum(1 for row in problems if row.status is RowStatus.CREATED)
            if waiting:
                console.print(
                    f"[yellow]{waiting} hospital(s) created but not activated:[/] a batch is"
                    " activated once all its rows exist, and theirs has rows missing."
                )
        if written is not None:
            console.print(
                f"[red]{len(failed)} failed row(s)[/] written to [bold]{escape(str(written))}[/]:"
                f" fix them and import that file: hospital-bulk import {shlex.quote(str(written))}",
                soft_wrap=True,
            )
        if code is Exit.INTERRUPTED:
            console.print(f"[yellow]Stopped: job {job.id} is {job.state} and can be resumed.[/]")
            if self.upstream.embedded:
                console.print(
                    "[yellow]The embedded directory ended with this process: a resume"
                    " starts from an empty one.[/]"
                )
        if resume is not None:
            if code is Exit.INTERRUPTED:
                lead = "Resume with"
            elif written is not None:
                lead = "Or retry them in this job instead"
            else:
                lead = "Retry what is missing with"
            console.print(f"{lead}: [bold]{escape(resume)}[/]", soft_wrap=True)
        return code
