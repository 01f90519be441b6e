"""The ``hospital-bulk`` command: a typer app, one module per group of commands."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

import typer

from . import demo, importing, jobs, servers, validate
from .errors import Exit, fail, stderr
from .settings import store_hint

HELP = f"""Load hospital CSV files into the Hospital Directory, exactly once.

Validate a file, import it with a progress bar, follow and resume jobs, run the
service or a stand-in directory — or try everything offline with `hospital-bulk demo`.

Settings: a flag wins over its environment variable, which wins over the default
(each option's help names its variable). Jobs live in {store_hint()}
unless --store / HOSPITAL_BULK_STORE says otherwise; the service uses the same file.
"""

EPILOG = (
    "Exit status: 0 success; 1 error (invalid file, nothing created, unknown job);"
    " 2 partial import; 64 bad command line; 130 stopped by Ctrl-C (resumable)."
)

app = typer.Typer(
    name="hospital-bulk",
    help=HELP,
    epilog=EPILOG,
    no_args_is_help=True,
    rich_markup_mode="markdown",
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

#: The status click (vendored by typer) gives its usage errors.
USAGE_ERROR = 2

_FILES = "Files"
_JOBS = "Jobs"
_SERVERS = "Servers"

app.command("validate", rich_help_panel=_FILES)(validate.validate_command)
app.command("import", rich_help_panel=_FILES)(importing.import_command)
app.command("jobs", rich_help_panel=_JOBS)(jobs.jobs_command)
app.command("status", rich_help_panel=_JOBS)(jobs.status_command)
app.command("resume", rich_help_panel=_JOBS)(jobs.resume_command)
app.command("cancel", rich_help_panel=_JOBS)(jobs.cancel_command)
app.command("delete", rich_help_panel=_JOBS)(jobs.delete_command)
app.command("serve", rich_help_panel=_SERVERS)(servers.serve_command)
app.command("directory", rich_help_panel=_SERVERS)(servers.directory_command)
app.command("demo", rich_help_panel=_SERVERS)(demo.demo_command)


def main(args: Sequence[str] | None = None) -> None:
    """Run the command line; a usage error exits 64 so that 2 always means a partial import."""
    # stamina logs each retry as a bare warning: the progress bar already shows the
    # throttling and the failures, and a line per retry would scroll it away.
    logging.getLogger("stamina").setLevel(logging.ERROR)
    command = typer.main.get_command(app)
    try:
        code = command.main(args=args, prog_name="hospital-bulk", standalone_mode=False)
    except typer.TyperException as error:
        # Typer vendors click: its usage errors are the TyperExceptions exiting with 2.
        show = getattr(error, "show", None)
        if callable(show):
            show()
        else:
            fail(error.format_message())
        code = Exit.USAGE if error.exit_code == USAGE_ERROR else error.exit_code
    except typer.Abort:
        stderr().print("Aborted.")
        code = Exit.ERROR
    sys.exit(code if isinstance(code, int) else Exit.OK)


__all__ = ["app", "main"]
