"""``jobs``, ``status``, ``resume``, ``cancel``, ``delete``: jobs in the shared store.

The store is the service's by default, so a job started by either is seen, resumed
or deleted by the other.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import anyio
import typer
from rich.markup import escape

from hospital_bulk import DEFAULT_BASE_URL, BulkProcessor, reimportable_rows

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
from .running import Report, open_processor, write_failed_rows
from .settings import (
    DEFAULT_CONCURRENCY,
    DEFAULT_EMBEDDED_LATENCY,
    DEFAULT_RATE_LIMIT,
    DEFAULT_RATE_WINDOW,
    ApiOption,
    ConcurrencyOption,
    EmbeddedLatencyOption,
    JsonLinesOption,
    JsonOption,
    RateLimitOption,
    RateWindowOption,
    StoreOption,
    Upstream,
    store_url,
)

JobIdArgument = Annotated[
    str, typer.Argument(metavar="ID", show_default=False, help="The job id (its `batch_id`).")
]


async def _recovered(processor: BulkProcessor) -> None:
    """Jobs whose process died still look running: mark them interrupted first, so what
    is shown is true and they can be resumed. Live runners keep renewing their lease
    and are left alone."""
    await processor.recover()


@handles_errors
def jobs_command(
    limit: Annotated[int, typer.Option("--limit", min=1, help="Show at most this many.")] = 20,
    json_lines: Annotated[
        bool, typer.Option("--json", help="One JSON object per job, one per line.")
    ] = False,
    store: StoreOption = None,
) -> None:
    """List jobs, newest first."""

    async def main() -> None:
        async with open_processor(store_url(store)) as processor:
            await _recovered(processor)
            jobs = await processor.list_jobs(limit=limit)
        if json_lines:
            for job in jobs:
                print_json(to_data(job))
        elif jobs:
            console = stdout()
            console.print(jobs_table(jobs, width=console.width))
        else:
            stdout().print(f"No jobs in {escape(store_url(store))}.")

    anyio.run(main)


@handles_errors
def status_command(
    job_id: JobIdArgument,
    all_rows: Annotated[
        bool, typer.Option("--rows", help="List every row, not only those not activated.")
    ] = False,
    failed_out: Annotated[
        Path | None,
        typer.Option(
            "--failed-out",
            metavar="PATH",
            show_default=False,
            help="Write the rows surely not created (failed, never sent) to this CSV, to"
            " fix and import again.",
        ),
    ] = None,
    json_lines: JsonOption = False,
    store: StoreOption = None,
) -> None:
    """Show a job: its state, progress, and the rows that are not activated."""

    async def main() -> None:
        async with open_processor(store_url(store)) as processor:
            await _recovered(processor)
            snapshot = await processor.get(job_id)
        summary = snapshot.summary()
        if failed_out is not None:
            rows = reimportable_rows(snapshot.rows)
            try:
                write_failed_rows(rows, failed_out)
            except OSError as error:
                raise CliError(f"cannot write {failed_out}: {error.strerror or error}") from None
            if not json_lines:
                stdout().print(f"{len(rows)} row(s) to import again written to {failed_out}")
        if json_lines:
            print_json({"job": to_data(snapshot.job), "summary": to_data(summary)})
            return
        console = stdout()
        console.print(job_table(snapshot.job))
        if all_rows:
            console.print(rows_table(summary.hospitals))
        elif problems := problem_rows(summary):
            console.print(rows_table(problems, title="Rows not activated", limit=SHOWN_ROWS))
            if len(problems) > SHOWN_ROWS:
                console.print("[dim]`--rows` lists every row.[/]")

    anyio.run(main)


@handles_errors
def resume_command(
    job_id: JobIdArgument,
    failed_out: Annotated[
        Path | None,
        typer.Option(
            "--failed-out",
            metavar="PATH",
            show_default=False,
            help="Write the rows that still fail to this CSV.",
        ),
    ] = None,
    json_lines: JsonLinesOption = False,
    api: ApiOption = DEFAULT_BASE_URL,
    embedded_latency: EmbeddedLatencyOption = DEFAULT_EMBEDDED_LATENCY,
    rate_limit: RateLimitOption = DEFAULT_RATE_LIMIT,
    rate_window: RateWindowOption = DEFAULT_RATE_WINDOW,
    concurrency: ConcurrencyOption = DEFAULT_CONCURRENCY,
    store: StoreOption = None,
) -> None:
    """Finish a job: send the rows not created yet, check those that may have landed,
    activate what is complete.

    Works on jobs that were cancelled, interrupted (their process died), or ended
    with errors. Exit status as for `import`.
    """
    upstream = Upstream(api, embedded_latency, rate_limit, rate_window, concurrency)
    report = Report(store_url(store), upstream, failed_out)

    async def main() -> Exit:
        console = stdout()
        async with open_processor(report.store_url, upstream) as processor:
            await _recovered(processor)
            job = (await processor.get(job_id)).job
            if upstream.embedded and not json_lines:
                console.print(
                    "[yellow]The embedded directory starts empty: rows created by an"
                    " earlier process are not in it.[/]"
                )
            return await run_job(processor, job, report, json_lines, console)

    raise typer.Exit(anyio.run(main))


@handles_errors
def cancel_command(job_id: JobIdArgument, store: StoreOption = None) -> None:
    """Cancel a job that has not started. (A running import stops with Ctrl-C in its
    own terminal; it can be resumed later.)"""

    async def main() -> None:
        async with open_processor(store_url(store)) as processor:
            await _recovered(processor)
            job = await processor.cancel(job_id)
        stdout().print(f"Job {job.id} is [bold]{job.state}[/].")

    anyio.run(main)


@handles_errors
def delete_command(
    job_id: JobIdArgument,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    api: ApiOption = DEFAULT_BASE_URL,
    embedded_latency: EmbeddedLatencyOption = DEFAULT_EMBEDDED_LATENCY,
    store: StoreOption = None,
) -> None:
    """Delete every hospital the job created in the directory; the job shows `deleted`."""
    upstream = Upstream(api, embedded_latency)
    url = store_url(store)

    async def load() -> str:
        async with open_processor(url) as processor:
            await _recovered(processor)
            job = (await processor.get(job_id)).job
        return f"{job.progress.created} hospital(s) of job {job.id} ({job.file_name or 'no file'})"

    what = anyio.run(load)
    if not yes:
        typer.confirm(f"Delete {what} from {upstream.describe()}?", abort=True)

    async def main() -> None:
        async with open_processor(url, upstream) as processor:
            job = await processor.delete(job_id)
        batches = len(job.batch_ids)
        stdout().print(f"Deleted {batches} upstream batch(es); job {job.id} is {job.state}.")

    anyio.run(main)
    raise typer.Exit(Exit.OK)
