"""``serve`` and ``directory``: the service and the stand-in Hospital Directory, on uvicorn.

The web stack is imported inside the commands: the others start without it.
"""

from __future__ import annotations

import contextlib
import math
import signal
import socket
from types import FrameType
from typing import TYPE_CHECKING, Annotated, Any

import anyio
import typer

from hospital_bulk import RateLimit

from .errors import CliError, handles_errors
from .running import open_processor
from .settings import RUNNING, SETTINGS_PANEL, with_settings

if TYPE_CHECKING:
    import uvicorn
    from fastapi import FastAPI

    from hospital_bulk_fastapi import ServiceSettings

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
            f"this command runs a web server: pip install 'hospital-bulk[cli]' ({error})"
        ) from None


@handles_errors
@with_settings(*RUNNING, "max_rows", "graceful_timeout", "resume_on_start")
def serve_command(
    settings: ServiceSettings,
    host: HostOption = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="Port.")] = 8000,
    log_level: LogLevelOption = "info",
) -> None:
    """Run the HTTP service (interactive docs at /docs) until SIGTERM or Ctrl-C.

    It shares its job store with this command line: jobs uploaded to it can be
    followed and resumed from the shell, and the other way round. On SIGTERM it
    refuses new uploads, ends live streams with a closing message, gives creates in
    flight --graceful-timeout seconds, records the jobs still running as interrupted
    and exits 0; the next start resumes them.
    """
    require_web_stack()
    import uvicorn

    from hospital_bulk_fastapi import create_app

    anyio.run(_check_store, settings)  # a clear error now, rather than a failed start-up later
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        timeout_graceful_shutdown=math.ceil(settings.graceful_timeout),
    )
    # uvicorn raises the signal that stopped it again once it has shut down, to die of
    # it: a stop asked for and carried out is a success here (exit 0), as with
    # uvicorn.run, which swallows the KeyboardInterrupt of a Ctrl-C.
    previous = signal.signal(signal.SIGTERM, _ignore_signal)
    try:
        with contextlib.suppress(KeyboardInterrupt):
            _stopping_server(app, config).run()
    finally:
        signal.signal(signal.SIGTERM, previous)


def _stopping_server(app: FastAPI, config: uvicorn.Config) -> uvicorn.Server:
    """A uvicorn server that starts stopping the service before it closes connections:
    otherwise it would wait for live streams, which end only with their jobs."""
    import uvicorn

    from hospital_bulk_fastapi import begin_shutdown

    class Server(uvicorn.Server):
        async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
            await begin_shutdown(app, linger=min(5.0, config.timeout_graceful_shutdown or 0))
            await super().shutdown(sockets)

    return Server(config)


def _ignore_signal(number: int, frame: FrameType | None) -> None:
    pass


async def _check_store(settings: ServiceSettings) -> None:
    async with open_processor(settings) as processor:
        await processor.ping()


def _rate_limit(text: str) -> RateLimit | None:
    from hospital_bulk_standin import parse_rate_limit

    try:
        return parse_rate_limit(text)
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None


def _directory_option(name: str, envvar: str, help: str, **more: Any) -> Any:
    return typer.Option(
        name, envvar=envvar, show_envvar=True, help=help, rich_help_panel=SETTINGS_PANEL, **more
    )


def _limit_help(what: str) -> str:
    return f"{what} per client IP, like 30/60; 0 for none."


@handles_errors
def directory_command(
    host: HostOption = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="Port.")] = 9000,
    log_level: LogLevelOption = "info",
    latency: Annotated[
        float,
        _directory_option(
            "--latency",
            "HOSPITAL_DIRECTORY_LATENCY",
            "How long each create takes (the real directory: ~5 s).",
            min=0.0,
            metavar="SECONDS",
        ),
    ] = 0.5,
    rate_limit: Annotated[
        str,
        _directory_option(
            "--rate-limit",
            "HOSPITAL_DIRECTORY_CREATE_LIMIT",
            _limit_help("Creates"),
            metavar="COUNT/SECONDS",
        ),
    ] = "30/60",
    other_limit: Annotated[
        str,
        _directory_option(
            "--other-limit",
            "HOSPITAL_DIRECTORY_OTHER_LIMIT",
            _limit_help("Every other call"),
            metavar="COUNT/SECONDS",
        ),
    ] = "50/60",
    admin: Annotated[
        bool,
        _directory_option(
            "--admin/--no-admin",
            "HOSPITAL_DIRECTORY_ADMIN",
            "Serve /_standin/ endpoints to inject faults, read stats and reset.",
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
