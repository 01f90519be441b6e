"""``hospital-bulk validate FILE``: check a file, create nothing."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, BinaryIO

import typer

from hospital_bulk import CsvOptions, validate_csv
from hospital_bulk.csv import delimiter_char, encoding_name

from .errors import CliError, Exit, handles_errors
from .output import print_json, print_report, report_data, stdout
from .settings import JsonOption, with_settings

if TYPE_CHECKING:
    from hospital_bulk_fastapi import ServiceSettings

#: The file argument that means standard input, and the name it is shown by.
STDIN = "-"
STDIN_NAME = "stdin"

FileArgument = Annotated[
    str,
    typer.Argument(
        metavar="FILE",
        show_default=False,
        help="A CSV file of hospitals: name, address and (optional) phone; `-` reads"
        " standard input.",
    ),
]


def _checked(spell: Callable[[str], str]) -> Callable[[str | None], str | None]:
    """A typer callback: the value as ``spell`` writes it; one it refuses is a usage
    error naming the option."""

    def check(value: str | None) -> str | None:
        if value is None:
            return None
        try:
            return spell(value)
        except ValueError as error:
            raise typer.BadParameter(str(error)) from None

    return check


EncodingOption = Annotated[
    str | None,
    typer.Option(
        "--encoding",
        metavar="NAME",
        show_default=False,
        callback=_checked(encoding_name),
        help="The file's text encoding, e.g. cp1252 (Excel's CSV on Windows) or latin-1."
        " Default: UTF-8, or UTF-16 when the file starts with its byte order mark.",
    ),
]
DelimiterOption = Annotated[
    str | None,
    typer.Option(
        "--delimiter",
        metavar="CHAR",
        show_default=False,
        callback=_checked(delimiter_char),
        help="The character between values, e.g. ';' or '|' ('tab' for a tab). Default:"
        " ',', ';' or tab, whichever the first line has most of.",
    ),
]


def csv_options(
    settings: ServiceSettings, encoding: str | None, delimiter: str | None
) -> CsvOptions:
    """How ``validate`` reads a file: as ``import`` does, with these options."""
    default = CsvOptions()
    return CsvOptions(
        max_rows=settings.max_rows, encoding=encoding or default.encoding, delimiter=delimiter
    )


def readable_file(file: str) -> Path:
    """``file`` if it is a file; a clear error rather than click's usage message otherwise."""
    path = Path(file)
    if not path.exists():
        raise CliError(f"no such file: {path}")
    if not path.is_file():
        raise CliError(f"not a file: {path}")
    return path


def standard_input() -> BinaryIO:
    return sys.stdin.buffer


@handles_errors
@with_settings("max_rows")
def validate_command(
    file: FileArgument,
    settings: ServiceSettings,
    encoding: EncodingOption = None,
    delimiter: DelimiterOption = None,
    json_lines: JsonOption = False,
) -> None:
    """Check a CSV file the way `import` would, without creating anything.

    Prints every error and warning with its row, line and column. Exit status 0
    when the file is valid, 1 when it is not (or cannot be read).
    """
    options = csv_options(settings, encoding, delimiter)
    if file == STDIN:
        name, source = STDIN_NAME, standard_input()
        report = validate_csv(source, options)
    else:
        path = readable_file(file)
        name = str(path)
        try:
            report = validate_csv(path, options)
        except OSError as error:
            raise CliError(f"cannot read {path}: {error.strerror or error}") from None
    if json_lines:
        print_json(report_data(report))
    else:
        print_report(report, name, console=stdout())
    raise typer.Exit(Exit.OK if report.valid else Exit.ERROR)
