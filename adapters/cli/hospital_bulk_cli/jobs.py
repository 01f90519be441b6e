"""``jobs``, ``status``, ``resume``, ``cancel``, ``delete``: jobs in the shared store.

The store is the service's by default, so a job started by either is seen, resumed
or deleted by the other. Every command first marks the jobs of dead processes
interrupted, so that what it shows is true and they can be resumed.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import anyio
import typer
from rich.markup import escape

from hospital_bulk import reimportable_rows

from .errors import CliError, Exit, handles_errors
from .importing import run_job
from .output import (
    SHOWN_ROWS,
    job_table,
    jobs_table,
    print_json,
    problem_rows,
    rows_table,
    stdout,
    to_data,
)
from .running import open_processor, write_failed_rows
from .settings import (
    RUNNING,
    JsonLinesOption,
    JsonOption,
    describe,
    for_job,
    with_settings,
)

if TYPE_CHECKING:
    from hospital_bulk_fastapi import ServiceSettings


def _failed_out(help: str) -> Any:
    return typer.Option("--failed-out", metavar="PATH", show_default=False, help=help)


JobIdArgument = Annotated[
    str, typer.Argument(metavar="ID", show_default=False, help="The job id (its `batch_id`).")
]


@handles_errors
@with_settings("store")
def jobs_command(
    settings: ServiceSettings,
    limit: Annotated[int, typer.Option("--limit", min=1, help="Show at most this many.")] = 20,
    json_lines: Annotated[
        bool, typer.Option("--json", help="One JSON object per job, one per line.")
    ] = False,
) -> None:
    """List jobs, newest first."""

    async def main() -> None:
        async with open_processor(settings) as processor:
            await processor.recover()
            jobs = await processor.list_jobs(limit=limit)
        console = stdout()
        if json_lines:
            for job in jobs:
                print_json(to_data(job))
        elif jobs:
            console.print(jobs_table(jobs, width=console.width))
        else:
            console.print(f"No jobs in {escape(settings.store)}.")

    anyio.run(main)


@handles_errors
@with_settings("store")
def status_command(
    job_id: JobIdArgument,
    settings: ServiceSettings,
    all_rows: Annotated[
        bool, typer.Option("--rows", help="List every row, not only those not activated.")
    ] = False,
    failed_out: Annotated[
        Path | None,
        _failed_out(
            "Write the rows surely not created (failed, never sent) to this CSV, to fix"
            " and import again."
        ),
    ] = None,
    json_lines: JsonOption = False,
) -> None:
    """Show a job: its state, progress, and the rows that are not activated."""

    async def main() -> None:
        async with open_processor(settings) as processor:
            await processor.recover()
            snapshot = await processor.get(job_id)
        summary = snapshot.summary()
        console = stdout()
        if failed_out is not None:
            rows = reimportable_rows(snapshot.rows)
            try:
                write_failed_rows(rows, failed_out)
            except OSError as error:
                raise CliError(f"cannot write {failed_out}: {error.strerror or error}") from None
            if not json_lines:
                console.print(f"{len(rows)} row(s) to import again written to {failed_out}")
        if json_lines:
            print_json({"job": to_data(snapshot.job), "summary": to_data(summary)})
            return
        console.print(job_table(snapshot.job))
        if all_rows:
            console.print(rows_table(summary.hospitals))
        elif problems := problem_rows(summary):
            console.print(rows_table(problems, title="Rows not activated", limit=SHOWN_ROWS))
            if len(problems) > SHOWN_ROWS:
                console.print("[dim]`--rows` lists every row.[/]")

    anyio.run(main)


async def settings_for(settings: ServiceSettings, job_id: str) -> ServiceSettings:
    """The settings to work on the job with: its own directory unless one is named."""
    async with open_processor(settings) as processor:
        await processor.recover()
        return for_job(settings, await processor.get_job(job_id))


#: Unset, ``--api`` is the job's own directory.
_JOBS_DIRECTORY: dict[str, object] = {"api_base": None}


@handles_errors
@with_settings(*RUNNING, defaults=_JOBS_DIRECTORY)
def resume_command(
    job_id: JobIdArgument,
    settings: ServiceSettings,
    failed_out: Annotated[
        Path | None, _failed_out("Write the rows that still fail to this CSV.")
    ] = None,
    json_lines: JsonLinesOption = False,
) -> None:
    """Finish a job: send the rows not created yet, check those that may have landed,
    activate what is complete; a job accepted but never started runs now.

    Works on jobs that were cancelled, interrupted (their process died), or ended
    with errors. Exit status as for `import`.
    """

    async def main() -> Exit:
        console = stdout()
        bound = await settings_for(settings, job_id)
        async with open_processor(bound) as processor:
            await processor.recover()
            job = await processor.get_job(job_id)
            if bound.embedded and not json_lines:
                console.print(
                    "[yellow]The embedded directory starts empty: rows created by an"
                    " earlier process are not in it.[/]"
                )
            return await run_job(processor, job, bound, failed_out, json_lines, console)

    raise typer.Exit(anyio.run(main))


@handles_errors
@with_settings("store")
def cancel_command(job_id: JobIdArgument, settings: ServiceSettings) -> None:
    """Cancel a job that has not started. (A running import stops with Ctrl-C in its
    own terminal; it can be resumed later.)"""

    async def main() -> None:
        async with open_processor(settings) as processor:
            await processor.recover()
            job = await processor.cancel(job_id)
        stdout().print(f"Job {job.id} is [bold]{job.state}[/].")

    anyio.run(main)


@handles_errors
@with_settings("api_base", "embedded_latency", "store", defaults=_JOBS_DIRECTORY)
def delete_command(
    job_id: JobIdArgument,
    settings: ServiceSettings,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete every hospital the job created in the directory; the job shows `deleted`."""

    async def what_goes() -> str:
        async with open_processor(settings) as processor:
            await processor.recover()
            job = await processor.get_job(job_id)
        return f"{job.progress.created} hospital(s) of job {job.id} ({job.file_name or 'no file'})"

    async def delete() -> str:
        async with open_processor(settings) as processor:
            await processor.recover()
            job = await processor.delete(job_id)
        batches = len(job.creation_batch_ids)
        return f"Deleted {batches} upstream batch(es); job {job.id} is {job.state}."

    settings = anyio.run(settings_for, settings, job_id)
    if not yes:
        typer.confirm(f"Delete {anyio.run(what_goes)} from {describe(settings)}?", abort=True)
    stdout().print(anyio.run(delete))
    raise typer.Exit(Exit.OK)
