"""``hospital-bulk demo``: the whole product on one machine, offline, in seconds.

One event loop holds one processor — the embedded directory and a local SQLite
store — shared by the service (uvicorn, in this process) and by the import shown
with the progress bar. So the job the bar follows is the one the service reports
at its status URL, and its hospitals are in the directory the service writes to.
"""

from __future__ import annotations

import contextlib
import importlib.resources
import signal
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import anyio
import typer
from rich.markup import escape

from hospital_bulk import BulkProcessor
from hospital_bulk.stores import default_store_url

from .errors import CliError, Exit, handles_errors
from .output import stdout
from .progress import ProgressBarView
from .running import conclude, drive, open_processor
from .servers import require_web_stack
from .settings import EMBEDDED, with_settings

if TYPE_CHECKING:
    import uvicorn
    from fastapi import FastAPI

    from hospital_bulk_fastapi import ServiceSettings

EXAMPLE = "hospitals.csv"
#: Seconds the service may take to start (it opens the store and recovers old jobs).
STARTUP_TIMEOUT = 20.0


def example_csv() -> bytes:
    """The bundled example file: 30 fictional hospitals, two upstream batches."""
    return importlib.resources.files(__package__).joinpath("examples", EXAMPLE).read_bytes()


def demo_store_url() -> str:
    """Beside the shared store, not in it: demo jobs ran against a directory now gone,
    and resuming one against the real directory would create its hospitals there."""
    return default_store_url().replace("jobs.sqlite3", "demo.sqlite3")


@handles_errors
# Fewer creates at once than the default, so that the bar has something to show.
@with_settings("embedded_latency", "concurrency", defaults={"concurrency": 5}, api_base=EMBEDDED)
def demo_command(
    settings: ServiceSettings,
    host: Annotated[str, typer.Option("--host", help="Interface the service listens on.")] = (
        "127.0.0.1"
    ),
    port: Annotated[
        int,
        typer.Option(
            "--port", min=0, max=65535, help="Port of the service; if taken (or 0), a free one."
        ),
    ] = 8000,
    keep_serving: Annotated[
        bool,
        typer.Option("--keep-serving", help="Leave the service up afterwards, until Ctrl-C."),
    ] = False,
    store: Annotated[
        str | None,
        typer.Option(
            "--store",
            metavar="URL",
            show_default=demo_store_url().replace(str(Path.home()), "~", 1),
            help="Job store of the demo (not $HOSPITAL_BULK_STORE: demo jobs stay apart).",
        ),
    ] = None,
) -> None:
    """Try it all offline: start the service on the embedded directory, import the bundled
    example file with the progress bar, print the summary and where to look next.

    Finishes by itself in a few seconds, unless `--keep-serving`.
    """
    require_web_stack()
    settings = settings.model_copy(update={"store": store or demo_store_url()})
    raise typer.Exit(anyio.run(_demo, settings, host, port, keep_serving))


async def _demo(settings: ServiceSettings, host: str, port: int, keep: bool) -> Exit:
    from hospital_bulk_fastapi import create_app

    console = stdout()
    store = settings.store
    async with open_processor(settings) as processor:
        app = create_app(settings, processor=processor)
        with _listening(host, port) as listener:
            server = _server(app)
            base = f"http://{_url_host(host)}:{listener.getsockname()[1]}"
            async with anyio.create_task_group() as group:
                group.start_soon(server.serve, [listener])
                await _started(server)
                console.print(
                    f"[bold]Hospital Bulk Processor demo[/] — the service runs at {base}"
                    f" on the embedded directory ({settings.embedded_latency:g} s per create),"
                    f" jobs in {escape(store)}"
                )
                code, job_id = await _import_example(processor, settings)
                # After a Ctrl-C during the import, the user wants out: no serving on.
                keep = keep and code is not Exit.INTERRUPTED
                _where_next(base, store, job_id, serving=keep)
                if keep:
                    console.print(f"Serving at {base} — press Ctrl-C to stop.", soft_wrap=True)
                    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                        async for _ in signals:
                            break
                server.should_exit = True
    return code


async def _import_example(processor: BulkProcessor, settings: ServiceSettings) -> tuple[Exit, str]:
    console = stdout()
    job = await processor.submit(example_csv(), file_name=EXAMPLE)
    console.print(
        f"Importing the bundled {EXAMPLE}: [bold]{job.total_rows}[/] hospitals in"
        f" {len(job.creation_batch_ids)} upstream batches, job [bold]{job.id}[/]"
    )
    view = ProgressBarView(job.total_rows, processor.settings.create_limit, console)
    outcome = await drive(processor, job.id, view=view)
    code = conclude(outcome, settings, failed_out=None, json_lines=False, console=console)
    return code, job.id


def _where_next(base: str, store: str, job_id: str, *, serving: bool) -> None:
    console = stdout()
    when = "" if serving else " (the service stops with the demo; --keep-serving keeps it up)"
    console.print(f"\n[bold]Where to look next[/]{when}")
    for label, where in (
        ("API docs", f"{base}/docs"),
        ("job status", f"{base}/bulk/status/{job_id}"),
        ("live events", f"{base}/hospitals/bulk/{job_id}/events"),
        ("from the shell", f"hospital-bulk status {job_id} --store {store}"),
    ):
        console.print(f"  {label:<16}{escape(where)}", soft_wrap=True)


def _server(app: FastAPI) -> uvicorn.Server:
    import uvicorn

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            # Ctrl-C belongs to the import, then to the demo: not to uvicorn.
            yield

    return Server(uvicorn.Config(app, log_level="warning", lifespan="on"))


async def _started(server: uvicorn.Server) -> None:
    with anyio.fail_after(STARTUP_TIMEOUT):
        while not server.started:
            if server.should_exit:
                raise CliError("the service did not start")
            await anyio.sleep(0.02)


@contextlib.contextmanager
def _listening(host: str, port: int) -> Iterator[socket.socket]:
    """A socket bound to ``port``, or to a free port when that one is taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        try:
            listener.bind((host, port))
        except OSError:
            listener.bind((host, 0))
        yield listener
    finally:
        listener.close()


def _url_host(host: str) -> str:
    if host in ("0.0.0.0", "::"):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host
