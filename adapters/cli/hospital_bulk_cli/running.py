"""Running a job in this process: the processor, the view, Ctrl-C, and what is left after.

Shared by ``import``, ``resume`` and ``demo``.
"""

from __future__ import annotations

import signal
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import attrs
from rich.console import Console
from rich.markup import escape

from hospital_bulk import (
    BulkProcessor,
    HospitalBulkError,
    JobSnapshot,
    JobState,
    RowOutcome,
    RowStatus,
    Run,
    reimport_csv,
    reimportable_rows,
)

from .errors import CliError, Exit
from .output import SHOWN_ROWS, print_json, problem_rows, rows_table, summary_table, to_data
from .progress import JobView
from .settings import command_line, lasts

if TYPE_CHECKING:
    from hospital_bulk_fastapi import ServiceSettings

#: Signals that stop a run cleanly: the first cancels, the second stops at once.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@asynccontextmanager
async def open_processor(settings: ServiceSettings) -> AsyncIterator[BulkProcessor]:
    """The processor the settings describe (the service's own mapping), closed on the
    way out even when Ctrl-C cancelled the command."""
    from hospital_bulk_fastapi.settings import open_processor as open_for_settings

    # A progress bar wants to hear about a quiet job sooner than a server does.
    engine = attrs.evolve(settings.processor_settings(), watch_poll=0.25)
    async with AsyncExitStack() as stack:
        try:
            processor = await open_for_settings(settings, stack, engine)
        except ValueError as error:
            raise CliError(f"--store: {error}") from None
        except (ImportError, OSError) as error:
            raise CliError(f"cannot open the store {settings.store!r}: {error}") from None
        try:
            yield processor
        finally:
            with anyio.CancelScope(shield=True):
                await stack.aclose()


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


def write_failed_rows(rows: Sequence[RowOutcome], path: Path) -> None:
    """An importable file of ``rows``, with why each is there (ignored on import)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(reimport_csv(rows), encoding="utf-8", newline="")


def default_failed_path(source: Path) -> Path:
    return source.with_name(f"{source.stem}.failed.csv")


def conclude(
    outcome: Outcome,
    settings: ServiceSettings,
    *,
    failed_out: Path | None,
    json_lines: bool,
    console: Console,
) -> Exit:
    """After a run: write the rows to import again, print the summary and the next step."""
    snapshot, code = outcome.snapshot, outcome.exit_code
    job, summary = snapshot.job, snapshot.summary()
    failed = reimportable_rows(snapshot.rows) if code is not Exit.INTERRUPTED else []
    written = None
    if failed and failed_out is not None:
        try:
            write_failed_rows(failed, failed_out)
            written = failed_out
        except OSError as error:
            console.print(f"[red]cannot write the failed rows:[/] {escape(str(error))}")
    resume = None
    if job.state.is_resumable and lasts(settings):
        resume = command_line("resume", job.id, settings=settings)
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
        if waiting := sum(1 for row in problems if row.status is RowStatus.CREATED):
            console.print(
                f"[yellow]{waiting} hospital(s) created but not activated:[/] a batch is"
                " activated once all its rows exist, and theirs has rows missing."
            )
    if written is not None:
        again = command_line("import", str(written), settings=settings)
        console.print(
            f"[red]{len(failed)} failed row(s)[/] written to [bold]{escape(str(written))}[/]:"
            f" fix them and import that file: {escape(again)}",
            soft_wrap=True,
        )
    if code is Exit.INTERRUPTED:
        if lasts(settings):
            console.print(f"[yellow]Stopped: job {job.id} is {job.state} and can be resumed.[/]")
        else:
            console.print(
                f"[yellow]Stopped: job {job.id} is {job.state}; it lived in memory"
                " (--store memory://) and ends with this process: import the file again.[/]"
            )
        if settings.embedded:
            console.print(
                "[yellow]The embedded directory ended with this process: a resume"
                " starts from an empty one.[/]"
            )
    if resume is not None:
        lead = "Retry what is missing with"
        if code is Exit.INTERRUPTED:
            lead = "Resume with"
        elif written is not None:
            lead = "Or retry them in this job instead"
        console.print(f"{lead}: [bold]{escape(resume)}[/]", soft_wrap=True)
    return code
