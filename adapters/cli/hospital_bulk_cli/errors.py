"""Exit codes, and how errors become them: a clear line on stderr, never a traceback."""

from __future__ import annotations

import enum
import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from hospital_bulk import HospitalBulkError, JobNotFoundError, StoreError

P = ParamSpec("P")
T = TypeVar("T")


class Exit(enum.IntEnum):
    """What a command's exit status means (documented in docs/cli.md)."""

    OK = 0  # all rows created and activated; a query or an action succeeded
    ERROR = 1  # invalid input, nothing created, unknown job, unusable store or URL
    PARTIAL = 2  # some rows created, some not: fix and import the failed rows, or resume
    USAGE = 64  # the command line itself was wrong (sysexits' EX_USAGE)
    INTERRUPTED = 130  # Ctrl-C: the job stopped cleanly and can be resumed


class CliError(Exception):
    """A failure the user can act on: its message is all they see."""

    def __init__(self, message: str, code: Exit = Exit.ERROR) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def stderr() -> Console:
    # Made per call: tests swap sys.stderr, and rich reads it when the console is made.
    return Console(stderr=True, highlight=False)


def fail(message: str) -> None:
    stderr().print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)


def handles_errors(command: Callable[P, T]) -> Callable[P, T]:
    """Map the library's errors to a message and an exit status."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return command(*args, **kwargs)
        except (CliError, HospitalBulkError, BaseExceptionGroup) as error:
            # Task groups wrap what failed inside them: the first leaf is the story.
            cause = error
            while isinstance(cause, BaseExceptionGroup):
                cause = cause.exceptions[0]
            if not isinstance(cause, CliError | HospitalBulkError):
                raise
            fail(_message(cause))
            code = cause.code if isinstance(cause, CliError) else Exit.ERROR
            raise typer.Exit(code) from None

    return wrapper


def _message(error: CliError | HospitalBulkError) -> str:
    if isinstance(error, CliError):
        return error.message
    if isinstance(error, JobNotFoundError):
        return f"no job with id {error.job_id!r} in this store (see `hospital-bulk jobs`)"
    if isinstance(error, StoreError):
        return f"the job store failed: {error}"
    return str(error)  # JobConflictError and the rest say what happened
