"""Settings of the command line: a flag wins over its environment variable, which
wins over the default.

Typer reads the flag and the variable (``envvar=``); this module names the
variables, holds the defaults and turns the resolved values into library objects.
The variable names are the service's, so one environment configures both.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import attrs
import typer

from hospital_bulk import (
    DEFAULT_BASE_URL,
    CsvOptions,
    DirectoryClient,
    HttpDirectoryClient,
    ProcessorSettings,
    RateLimit,
)
from hospital_bulk.stores import default_store_url

from .errors import CliError

ENV_API = "HOSPITAL_API_BASE"
ENV_STORE = "HOSPITAL_BULK_STORE"
ENV_RATE_LIMIT = "HOSPITAL_BULK_RATE_LIMIT"
ENV_RATE_WINDOW = "HOSPITAL_BULK_RATE_WINDOW"
ENV_CONCURRENCY = "HOSPITAL_BULK_CONCURRENCY"
ENV_MAX_ROWS = "HOSPITAL_BULK_MAX_ROWS"
ENV_EMBEDDED_LATENCY = "HOSPITAL_BULK_EMBEDDED_LATENCY"

#: ``--directory embedded``: the stand-in directory, in this process.
EMBEDDED = "embedded"
#: A create takes ~5 s upstream; half a second keeps the stand-in slow enough to
#: watch and quick enough for a demo.
DEFAULT_EMBEDDED_LATENCY = 0.5
#: The real directory's limits (UPSTREAM.md), which the embedded one enforces too.
UPSTREAM_CREATE_LIMIT = RateLimit(30, 60.0)
UPSTREAM_OTHER_LIMIT = RateLimit(50, 60.0)

DEFAULT_RATE_LIMIT = UPSTREAM_CREATE_LIMIT.count
DEFAULT_RATE_WINDOW = UPSTREAM_CREATE_LIMIT.window
DEFAULT_CONCURRENCY = 20
DEFAULT_MAX_ROWS = 10_000

SETTINGS_PANEL = "Settings (flag > environment variable > default)"


def store_hint() -> str:
    """The default store as ``--help`` shows it: home abbreviated."""
    return default_store_url().replace(str(Path.home()), "~", 1)


StoreOption = Annotated[
    str | None,
    typer.Option(
        "--store",
        envvar=ENV_STORE,
        show_envvar=True,
        metavar="URL",
        show_default=store_hint(),
        help=(
            "Job store: sqlite:///PATH, memory:// or redis://HOST. The default is the"
            " service's, so both see the same jobs."
        ),
        rich_help_panel=SETTINGS_PANEL,
    ),
]
ApiOption = Annotated[
    str,
    typer.Option(
        "--api",
        "--directory",
        envvar=ENV_API,
        show_envvar=True,
        metavar="URL|embedded",
        help=(
            "The Hospital Directory: its base URL, or `embedded` for a stand-in inside"
            " this process (offline; gone when the command ends)."
        ),
        rich_help_panel=SETTINGS_PANEL,
    ),
]
EmbeddedLatencyOption = Annotated[
    float,
    typer.Option(
        "--embedded-latency",
        envvar=ENV_EMBEDDED_LATENCY,
        show_envvar=True,
        min=0.0,
        metavar="SECONDS",
        help="How long a create takes in the embedded directory (the real one: ~5 s).",
        rich_help_panel=SETTINGS_PANEL,
    ),
]
RateLimitOption = Annotated[
    int,
    typer.Option(
        "--rate-limit",
        envvar=ENV_RATE_LIMIT,
        show_envvar=True,
        min=0,
        metavar="CREATES",
        help="Creates sent per window (the upstream allows 30 a minute); 0 sends unpaced.",
        rich_help_panel=SETTINGS_PANEL,
    ),
]
RateWindowOption = Annotated[
    float,
    typer.Option(
        "--rate-window",
        envvar=ENV_RATE_WINDOW,
        show_envvar=True,
        min=0.001,
        metavar="SECONDS",
        help="Length of the rate-limit window.",
        rich_help_panel=SETTINGS_PANEL,
    ),
]
ConcurrencyOption = Annotated[
    int,
    typer.Option(
        "--concurrency",
        envvar=ENV_CONCURRENCY,
        show_envvar=True,
        min=1,
        metavar="N",
        help="Creates in flight at once.",
        rich_help_panel=SETTINGS_PANEL,
    ),
]
MaxRowsOption = Annotated[
    int,
    typer.Option(
        "--max-rows",
        envvar=ENV_MAX_ROWS,
        show_envvar=True,
        min=1,
        metavar="N",
        help="Largest file accepted, in data rows.",
        rich_help_panel=SETTINGS_PANEL,
    ),
]
JsonOption = Annotated[
    bool,
    typer.Option("--json", help="Print JSON for machines instead of tables."),
]
#: For the commands that run a job (import, resume): events as they happen.
JsonLinesOption = Annotated[
    bool,
    typer.Option("--json", help="Print each event as one JSON line, then a summary line."),
]


@attrs.frozen
class Upstream:
    """Where creates go and how fast."""

    api: str = DEFAULT_BASE_URL
    embedded_latency: float = DEFAULT_EMBEDDED_LATENCY
    rate_limit: int = DEFAULT_RATE_LIMIT
    rate_window: float = DEFAULT_RATE_WINDOW
    concurrency: int = DEFAULT_CONCURRENCY
    max_rows: int = DEFAULT_MAX_ROWS

    @property
    def embedded(self) -> bool:
        return self.api.strip().lower() == EMBEDDED

    @property
    def create_limit(self) -> RateLimit | None:
        return RateLimit(self.rate_limit, self.rate_window) if self.rate_limit > 0 else None

    def processor_settings(self) -> ProcessorSettings:
        """As the service builds them: a rate limit of 0 leaves every call unpaced."""
        return ProcessorSettings(
            concurrency=self.concurrency,
            create_limit=self.create_limit,
            other_limit=UPSTREAM_OTHER_LIMIT if self.rate_limit > 0 else None,
            csv=CsvOptions(max_rows=self.max_rows),
            # A progress bar wants to hear about a quiet job sooner than a server does.
            watch_poll=0.25,
        )

    def client(self) -> DirectoryClient:
        if self.embedded:
            # A public module of the library, imported only when asked for.
            from hospital_bulk.testing import FakeDirectory

            return FakeDirectory(
                latency=self.embedded_latency,
                create_limit=UPSTREAM_CREATE_LIMIT,
                other_limit=UPSTREAM_OTHER_LIMIT,
            )
        try:
            return HttpDirectoryClient(self.api)
        except ValueError as error:
            raise CliError(f"--api: {error}") from None

    def describe(self) -> str:
        """Where the rows go, for a header line."""
        if self.embedded:
            return f"the embedded directory ({self.embedded_latency:g} s per create)"
        return self.api

    def flags(self) -> list[str]:
        """The flags that reach the same directory from another command."""
        if self.embedded:
            return ["--directory", EMBEDDED]
        if self.api.rstrip("/") != DEFAULT_BASE_URL and not os.environ.get(ENV_API):
            return ["--api", self.api]
        return []


def store_url(flag: str | None) -> str:
    """The store URL: the flag (typer already fell back to the variable), else the default."""
    return flag if flag else default_store_url()
