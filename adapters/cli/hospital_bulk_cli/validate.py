"""``hospital-bulk validate FILE``: check a file, create nothing."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from hospital_bulk import CsvOptions, validate_csv

from .errors import CliError, Exit, handles_errors
from .output import print_json, print_report, report_data, stdout
from .settings import JsonOption, with_settings

if TYPE_CHECKING:
    from hospital_bulk_fastapi import ServiceSettings

FileArgument = Annotated[
    Path,
    typer.Argument(
        metavar="FILE",
        show_default=False,
        help="A CSV file of hospitals: name, address and (optional) phone.",
    ),
]


def readable_file(path: Path) -> Path:
    """``path`` if it is a file; a clear error rather than click's usage message otherwise."""
    if not path.exists():
        raise CliError(f"no such file: {path}")
    if not path.is_file():
        raise CliError(f"not a file: {path}")
    return path


@handles_errors
@with_settings("max_rows")
def validate_command(
    file: FileArgument, settings: ServiceSettings, json_lines: JsonOption = False
) -> None:
    """Check a CSV file the way `import` would, without creating anything.

    Prints every error and warning with its row, line and column. Exit status 0
    when the file is valid, 1 when it is not (or cannot be read).
    """
    path = readable_file(file)
    try:
        report = validate_csv(path, CsvOptions(max_rows=settings.max_rows))
    except OSError as error:
        raise CliError(f"cannot read {path}: {error.strerror or error}") from None
    if json_lines:
        print_json(report_data(report))
    else:
        print_report(report, str(file), console=stdout())
    raise typer.Exit(Exit.OK if report.valid else Exit.ERROR)
