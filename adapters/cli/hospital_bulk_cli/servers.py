"""``serve`` and ``directory``: the service and the stand-in Hospital Directory, on uvicorn.

The web stack is imported inside the commands: the others start without it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import anyio
import typer

from hospital_bulk import DEFAULT_BASE_URL, RateLimit

from .errors import CliError, handles_errors
from .running import open_processor
from .settings import (
    DEFAULT_CONCURRENCY,
    DEFAULT_EMBEDDED_LATENCY,
    DEFAULT_MAX_ROWS,
    DEFAULT_RATE_LIMIT,
    DEFAULT_RATE_WINDOW,
    SETTINGS_PANEL,
    ApiOption,
    ConcurrencyOption,
    EmbeddedLatencyOption,
    MaxRowsOption,
    RateLimitOption,
    RateWindowOption,
    StoreOption,
    Upstream,
    store_url,
)

if TYPE_CHECKING:
    from hospital_bulk_fastapi import ServiceSettings

ENV_DIRECTORY_LATENCY = "HOSPITAL_DIRECTORY_LATENCY"
ENV_DIRECTORY_CREATE_LIMIT = "HOSPITAL_DIRECTORY_CREATE_LIMIT"
ENV_DIRECTORY_OTHER_LIMIT = "HOSPITAL_DIRECTORY_OTHER_LIMIT"
ENV_DIRECTORY_ADMIN = "HOSPITAL_DIRECTORY_ADMIN"

HostOption = Annotated[str, typer.Option("--host", help="Interface to listen on.")]
LogLevelOption = Annotated[
    str,
    typer.Option(
        "--log-level",
        help="uvicorn's log level: critical, error, warning, info, debug, trace.",
    ),
]


def require_web_stack() -> None:
    """The service's dependencies are an extra: say how to get them, not a traceback."""
    try:
        # Imported to see that they can be: the commands import what they use later.
        import uvicorn  # noqa: F401

        import hospital_bulk_fastapi  # noqa: F401
    except ImportError as error:
        raise CliError(
            f"this command runs a web server: pip install 'hospital-bulk[cli,fastapi]' ({error})"
        ) from None


def service_settings(upstream: Upstream, store: str) -> ServiceSettings:
    """The service's settings from this command line's (already flag > env > default)."""
    import pydantic

    from hospital_bulk_fastapi import ServiceSettings

    try:
        return ServiceSettings(
            api_base="embedded" if upstream.embedded else upstream.api,
            embedded_latency=upstream.embedded_latency,
            store=store,
            rate_limit=upstream.rate_limit,
            rate_window=upstream.rate_window,
            concurrency=upstream.concurrency,
            max_rows=upstream.max_rows,
        )
    except pydantic.ValidationError as error:
        problems = "; ".join(
            f"{_flag(problem['loc'])}: {problem['msg'].removeprefix('Value error, ')}"
            for problem in error.errors()
        )
        raise CliError(f"invalid settings: {problems}") from None


def _flag(location: tuple[int | str, ...]) -> str:
    """The flag of a ServiceSettings field."""
    field = str(location[0]) if location else "?"
    return "--api" if field == "api_base" else "--" + field.replace("_", "-")


@handles_errors
def serve_command(
    host: HostOption = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="Port.")] = 8000,
    log_level: LogLevelOption = "info",
    api: ApiOption = DEFAULT_BASE_URL,
    embedded_latency: EmbeddedLatencyOption = DEFAULT_EMBEDDED_LATENCY,
    rate_limit: RateLimitOption = DEFAULT_RATE_LIMIT,
    rate_window: RateWindowOption = DEFAULT_RATE_WINDOW,
    concurrency: ConcurrencyOption = DEFAULT_CONCURRENCY,
    max_rows: MaxRowsOption = DEFAULT_MAX_ROWS,
    store: StoreOption = None,
) -> None:
    """Run the HTTP service (interactive docs at /docs) until Ctrl-C.

    It shares its job store with this command line: jobs uploaded to it can be
    followed and resumed from the shell, and the other way round.
    """
    require_web_stack()
    import uvicorn

    from hospital_bulk_fastapi import create_app

    upstream = Upstream(api, embedded_latency, rate_limit, rate_window, concurrency, max_rows)
    url = store_url(store)
    settings = service_settings(upstream, url)
    anyio.run(_check_store, url)  # a clear error now, rather than a failed start-up later
    uvicorn.run(create_app(settings), host=host, port=port, log_level=log_level)


async def _check_store(url: str) -> None:
    async with open_processor(url) as processor:
        await processor.store.ping()


def _rate_limit(text: str) -> RateLimit | None:
    from hospital_bulk_standin import parse_rate_limit

    try:
        return parse_rate_limit(text)
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None


def _limit_option(name: str, envvar: str, what: str) -> Any:
    return typer.Option(
        name,
        envvar=envvar,
        show_envvar=True,
        metavar="COUNT/SECONDS",
        help=f"{what} per client IP, like 30/60; 0 for none.",
        rich_help_panel=SETTINGS_PANEL,
    )


@handles_errors
def directory_command(
    host: HostOption = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="Port.")] = 9000,
    log_level: LogLevelOption = "info",
    latency: Annotated[
        float,
        typer.Option(
            "--latency",
            envvar=ENV_DIRECTORY_LATENCY,
            show_envvar=True,
            min=0.0,
            metavar="SECONDS",
            help="How long each create takes (the real directory: ~5 s).",
            rich_help_panel=SETTINGS_PANEL,
        ),
    ] = DEFAULT_EMBEDDED_LATENCY,
    rate_limit: Annotated[
        str,
        _limit_option("--rate-limit", ENV_DIRECTORY_CREATE_LIMIT, "Creates"),
    ] = "30/60",
    other_limit: Annotated[
        str,
        _limit_option("--other-limit", ENV_DIRECTORY_OTHER_LIMIT, "Every other call"),
    ] = "50/60",
    admin: Annotated[
        bool,
        typer.Option(
            "--admin/--no-admin",
            envvar=ENV_DIRECTORY_ADMIN,
            show_envvar=True,
            help="Serve /_standin/ endpoints to inject faults, read stats and reset.",
            rich_help_panel=SETTINGS_PANEL,
        ),
    ] = True,
) -> None:
    """Run a stand-in Hospital Directory: the real one's endpoints, answers, batch cap,
    one activation per batch and rate limits, in memory, until Ctrl-C.

    Point `import --api` or `serve --api` at it to work offline.
    """
    require_web_stack()
    import uvicorn

    from hospital_bulk_standin import create_directory_app

    app = create_directory_app(
        latency=latency,
        create_limit=_rate_limit(rate_limit),
        other_limit=_rate_limit(other_limit),
        admin=admin,
    )
    uvicorn.run(app, host=host, port=port, log_level=log_level)
