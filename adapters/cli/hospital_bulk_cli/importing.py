"""``hospital-bulk import FILE``: run a job in this process, with a progress bar."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import anyio
import typer
from rich.console import Console
from rich.markup import escape

from hospital_bulk import DEFAULT_BASE_URL, BulkProcessor, InvalidCsvError, Job, JobState

from .errors import CliError, Exit, handles_errors
from .output import findings_table, print_json, print_report, report_data, stdout
from .progress import JobView, JsonLinesView, ProgressBarView
from .running import Report, default_failed_path, drive, open_processor
from .settings import (
    DEFAULT_CONCURRENCY,
    DEFAULT_EMBEDDED_LATENCY,
    DEFAULT_MAX_ROWS,
    DEFAULT_RATE_LIMIT,
    DEFAULT_RATE_WINDOW,
    ApiOption,
    ConcurrencyOption,
    EmbeddedLatencyOption,
    JsonLinesOption,
    MaxRowsOption,
    RateLimitOption,
    RateWindowOption,
    StoreOption,
    Upstream,
    store_url,
)
from .validate import FileArgument, readable_file

FailedOutOption = Annotated[
    Path | None,
    typer.Option(
        "--failed-out",
        metavar="PATH",
        show_default=False,
        help="Where to write the rows that failed. Default: FILE.failed.csv next to FILE.",
    ),
]


@handles_errors
def import_command(
    file: FileArgument,
    failed_out: FailedOutOption = None,
    json_lines: JsonLinesOption = False,
    api: ApiOption = DEFAULT_BASE_URL,
    embedded_latency: EmbeddedLatencyOption = DEFAULT_EMBEDDED_LATENCY,
    rate_limit: RateLimitOption = DEFAULT_RATE_LIMIT,
    rate_window: RateWindowOption = DEFAULT_RATE_WINDOW,
    concurrency: ConcurrencyOption = DEFAULT_CONCURRENCY,
    max_rows: MaxRowsOption = DEFAULT_MAX_ROWS,
    store: StoreOption = None,
) -> None:
    """Create and activate every hospital of FILE, exactly once.

    Shows a progress bar (done/failed/total, rate, ETA, pacing), then a summary.
    Rows that failed are written to a CSV you can fix and import again. Ctrl-C
    cancels cleanly and prints how to resume.

    Exit status: 0 all created and activated; 2 partial; 1 invalid file or nothing
    created; 130 stopped by Ctrl-C (resumable).
    """
    path = readable_file(file)
    upstream = Upstream(api, embedded_latency, rate_limit, rate_window, concurrency, max_rows)
    report = Report(store_url(store), upstream, failed_out or default_failed_path(path))
    code = anyio.run(import_file, path, report, json_lines)
    raise typer.Exit(code)


async def import_file(path: Path, report: Report, json_lines: bool) -> Exit:
    console = stdout()
    async with open_processor(report.store_url, report.upstream) as processor:
        try:
            # Read once to show every finding (submit keeps only the verdict), then submit.
            validation = await processor.validate(path)
            if not validation.valid:
                raise InvalidCsvError(validation)
            job = await processor.submit(path, file_name=path.name)
        except OSError as error:
            raise CliError(f"cannot read {path}: {error.strerror or error}") from None
        except InvalidCsvError as error:
            if json_lines:
                print_json({"type": "cli.invalid_file", **report_data(error.report)})
            else:
                print_report(error.report, str(path), console=console)
                console.print("[red]Nothing was imported.[/] Fix the file and run again.")
            return Exit.ERROR
        if validation.warnings and not json_lines:
            console.print(findings_table("Warnings", validation.warnings, "yellow"))
        return await run_job(processor, job, report, json_lines, console)


async def run_job(
    processor: BulkProcessor,
    job: Job,
    report: Report,
    json_lines: bool,
    console: Console,
) -> Exit:
    """Drive ``job`` with a view of it, then report how it ended."""
    view: JobView
    if json_lines:
        view = JsonLinesView()
    else:
        _print_header(job, report, console)
        view = ProgressBarView(job.total_rows, report.upstream.create_limit, console)
    outcome = await drive(processor, job.id, view=view)
    return report.finish(outcome, json_lines=json_lines, console=console)


def _print_header(job: Job, report: Report, console: Console) -> None:
    name = escape(job.file_name or "the file")
    target = escape(report.upstream.describe())
    if job.state is not JobState.PENDING:
        console.print(
            f"Resuming job [bold]{job.id}[/] ({name}): {job.progress.created} of"
            f" {job.total_rows} hospitals created so far → {target}"
        )
        return
    batches = len(job.batch_ids)
    console.print(
        f"Importing {name}: [bold]{job.total_rows}[/] hospitals in {batches}"
        f" upstream batch{'es' if batches > 1 else ''} → {target}"
    )
    console.print(f"Job [bold]{job.id}[/] in {escape(report.store_url)}", soft_wrap=True)
