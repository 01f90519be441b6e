"""``hospital-bulk import FILE``: run a job in this process, with a progress bar."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import anyio
import attrs
import typer
from rich.console import Console
from rich.markup import escape

from hospital_bulk import BulkProcessor, InvalidCsvError, Job, JobState

from .errors import CliError, Exit, handles_errors
from .output import findings_table, print_json, print_report, report_data, stdout
from .progress import JobView, JsonLinesView, ProgressBarView
from .running import conclude, default_failed_path, drive, open_processor
from .settings import RUNNING, JsonLinesOption, describe, with_settings
from .validate import (
    STDIN,
    STDIN_NAME,
    DelimiterOption,
    EncodingOption,
    FileArgument,
    readable_file,
    standard_input,
)

if TYPE_CHECKING:
    from hospital_bulk_fastapi import ServiceSettings

FailedOutOption = Annotated[
    Path | None,
    typer.Option(
        "--failed-out",
        metavar="PATH",
        show_default=False,
        help="Where to write the rows that failed. Default: FILE.failed.csv next to FILE"
        " (stdin.failed.csv here when FILE is `-`).",
    ),
]


@handles_errors
@with_settings(*RUNNING, "max_rows")
def import_command(
    file: FileArgument,
    settings: ServiceSettings,
    encoding: EncodingOption = None,
    delimiter: DelimiterOption = None,
    failed_out: FailedOutOption = None,
    json_lines: JsonLinesOption = False,
) -> None:
    """Create and activate every hospital of FILE, exactly once.

    Shows a progress bar (done/failed/total, rate, ETA, pacing), then a summary.
    Rows that failed are written to a CSV you can fix and import again. Ctrl-C
    cancels cleanly and prints how to resume.

    Exit status: 0 all created and activated; 2 partial; 1 invalid file or nothing
    created; 130 stopped by Ctrl-C (resumable).
    """
    if file == STDIN:
        with spooled_stdin() as spool:
            reading = Reading(spool, STDIN_NAME, STDIN_NAME, encoding, delimiter)
            failed_out = failed_out or Path(f"{STDIN_NAME}.failed.csv")
            raise typer.Exit(anyio.run(import_file, reading, settings, failed_out, json_lines))
    path = readable_file(file)
    reading = Reading(path, str(path), path.name, encoding, delimiter)
    failed_out = failed_out or default_failed_path(path)
    raise typer.Exit(anyio.run(import_file, reading, settings, failed_out, json_lines))


@attrs.frozen
class Reading:
    """What to read and how: ``path`` is the file, or standard input spooled to disk;
    ``name`` is how messages show it, ``file_name`` how the job records it."""

    path: Path
    name: str
    file_name: str
    encoding: str | None
    delimiter: str | None


@contextmanager
def spooled_stdin() -> Iterator[Path]:
    """Standard input copied to a temporary file: it is read twice (validated, then
    submitted), and a large one must not sit in memory."""
    with tempfile.TemporaryDirectory(prefix="hospital-bulk-") as directory:
        path = Path(directory) / "stdin.csv"
        with path.open("wb") as spool:
            shutil.copyfileobj(standard_input(), spool, 1 << 20)
        yield path


async def import_file(
    reading: Reading, settings: ServiceSettings, failed_out: Path, json_lines: bool
) -> Exit:
    console = stdout()
    encoding, delimiter = reading.encoding, reading.delimiter
    async with open_processor(settings) as processor:
        try:
            # Read once to show every finding (submit keeps only the verdict), then submit.
            validation = await processor.validate(
                reading.path, encoding=encoding, delimiter=delimiter
            )
            if not validation.valid:
                raise InvalidCsvError(validation)
            job = await processor.submit(
                reading.path,
                file_name=reading.file_name,
                encoding=encoding,
                delimiter=delimiter,
            )
        except OSError as error:
            raise CliError(f"cannot read {reading.name}: {error.strerror or error}") from None
        except InvalidCsvError as error:
            if json_lines:
                print_json({"type": "cli.invalid_file", **report_data(error.report)})
            else:
                print_report(error.report, reading.name, console=console)
                console.print("[red]Nothing was imported.[/] Fix the file and run again.")
            return Exit.ERROR
        if validation.warnings and not json_lines:
            console.print(findings_table("Warnings", validation.warnings, "yellow"))
        return await run_job(processor, job, settings, failed_out, json_lines, console)


async def run_job(
    processor: BulkProcessor,
    job: Job,
    settings: ServiceSettings,
    failed_out: Path | None,
    json_lines: bool,
    console: Console,
) -> Exit:
    """Run ``job`` with a view of it, then report how it ended."""
    view: JobView
    if json_lines:
        view = JsonLinesView()
    else:
        _print_header(job, settings, console)
        limit = processor.settings.create_limit
        view = ProgressBarView(job.total_rows, limit, console)
    outcome = await drive(processor, job.id, view=view)
    return conclude(
        outcome, settings, failed_out=failed_out, json_lines=json_lines, console=console
    )


def _print_header(job: Job, settings: ServiceSettings, console: Console) -> None:
    name = escape(job.file_name or "the file")
    target = escape(describe(settings))
    if job.state is not JobState.PENDING:
        console.print(
            f"Resuming job [bold]{job.id}[/] ({name}): {job.progress.created} of"
            f" {job.total_rows} hospitals created so far → {target}"
        )
        return
    batches = len(job.creation_batch_ids)
    console.print(
        f"Importing {name}: [bold]{job.total_rows}[/] hospitals in {batches}"
        f" upstream batch{'es' if batches > 1 else ''} → {target}"
    )
    console.print(f"Job [bold]{job.id}[/] in {escape(settings.store)}", soft_wrap=True)
