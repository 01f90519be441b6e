"""Shutdown and restart for real (issue 10): ``hospital-bulk serve`` in a subprocess on a
SQLite file, against the stand-in directory served by uvicorn on loopback.

SIGTERM with a WebSocket and an SSE watcher connected: both get a closing message and a
clean close, the process exits 0 within its grace, and the job it was running is left
``interrupted``; the next process on the same file completes it by itself. What the
stand-in holds at the end is the proof: each row exactly once, all active.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import anyio
import httpx
import pytest
from websockets.asyncio.client import connect

from hospital_bulk import BulkProcessor, JobState
from hospital_bulk.stores import open_store
from tests.helpers import csv_bytes, records
from tests.servers import HOST, UvicornServer, free_port

from .processes import (
    DIRECTORY_APP,
    copies_by_row,
    directory_env,
    finished,
    hospitals_upstream,
    once_each,
    poll_status,
    standin_client,
    standin_stats,
    upload_async,
)

pytestmark = pytest.mark.anyio

#: The console script, as installed beside this interpreter.
SCRIPT = Path(sys.executable).with_name("hospital-bulk")
#: Seconds the service gives creates in flight at shutdown; each create takes LATENCY.
GRACE = 5.0
LATENCY = 0.7
#: A generous bound on any wait: the test fails rather than hangs.
PATIENCE = 60.0


class Serve:
    """``hospital-bulk serve`` in a subprocess: its own process group, its output in a
    file, only this test's settings (no HOSPITAL_* variable of the developer's)."""

    def __init__(self, args: Sequence[str], workdir: Path, env: dict[str, str]) -> None:
        self.port = free_port()
        self.url = f"http://{HOST}:{self.port}"
        self.args = ["serve", "--host", HOST, "--port", str(self.port), *args]
        self.log = workdir / f"serve-{self.port}-{time.monotonic_ns()}.log"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("HOSPITAL_")}
        self.env.update(env)
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Self:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [str(SCRIPT), *self.args],
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 30
        while True:
            if self.process.poll() is not None:
                raise AssertionError(f"serve exited early:\n{self.output()}")
            try:
                with socket.create_connection((HOST, self.port), timeout=0.5):
                    return self
            except OSError:
                if time.monotonic() > deadline:
                    raise AssertionError(f"serve not up:\n{self.output()}") from None
                time.sleep(0.05)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def terminate(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)

    async def exit_code(self) -> int:
        """The exit status, waiting at most PATIENCE seconds for it."""
        assert self.process is not None
        process = self.process
        return await anyio.to_thread.run_sync(lambda: process.wait(PATIENCE))

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


@pytest.fixture(name="directory")
def fixture_directory() -> Iterator[UvicornServer]:
    """The stand-in, every create taking LATENCY seconds, without rate limits."""
    with UvicornServer(DIRECTORY_APP, env=directory_env(latency=LATENCY)) as server:
        yield server


def serve_args(directory: UvicornServer, store: str) -> list[str]:
    return [
        "--api",
        directory.url,
        "--store",
        store,
        "--rate-limit",
        "0",
        "--concurrency",
        "4",
        "--graceful-timeout",
        str(GRACE),
        "--log-level",
        "info",
    ]


async def watch_websocket(url: str, connected: anyio.Event) -> tuple[list[Any], int | None]:
    """Every message of the WebSocket until the server closes it, and the close code."""
    messages = []
    async with connect(url) as websocket:
        async for text in websocket:
            messages.append(json.loads(text))
            connected.set()
        return messages, websocket.close_code


async def watch_sse(url: str, connected: anyio.Event) -> list[dict[str, Any]]:
    """Every Server-Sent Event until the server ends the stream (cleanly: a broken one
    raises)."""
    events: list[dict[str, Any]] = []
    fields: dict[str, Any] = {}
    async with (
        httpx.AsyncClient(timeout=PATIENCE) as http,
        http.stream("GET", url, params={"after": 0}) as response,
    ):
        assert 200 == response.status_code
        async for line in response.aiter_lines():
            if not line:
                if fields:
                    events.append(fields)
                    connected.set()
                fields = {}
            elif not line.startswith(":"):
                name, _, value = line.partition(": ")
                fields[name] = json.loads(value) if name == "data" else value
    return events


async def test_sigterm_closes_watchers_exits_0_and_the_restart_completes_the_job(
    directory: UvicornServer, tmp_path: Path
) -> None:
    """A 40-row job runs 4 creates at a time, each taking 0.7 s. SIGTERM with a WebSocket
    and an SSE watcher connected: both get `service.stopping` (the WebSocket then closes
    with 1001, the stream ends cleanly), the process exits 0, and the job is left
    `interrupted` with no row in doubt (the creates in flight finished within the grace).
    Started again on the same file, the service completes the job by itself: each row
    upstream once, all active, each sent once."""
    store = f"sqlite:///{tmp_path / 'jobs.sqlite3'}"
    rows = records(40, prefix="Stopped")
    args = serve_args(directory, store)
    async with standin_client(directory.url) as upstream:
        with Serve(args, tmp_path, {}) as first:
            async with httpx.AsyncClient(base_url=first.url, timeout=PATIENCE) as api:
                batch_id = await upload_async(api, rows)
                await poll_status(api, batch_id, lambda body: body["progress"]["created"] >= 4)
            ws_url = f"ws://{HOST}:{first.port}/ws/progress/{batch_id}"
            sse_url = f"{first.url}/hospitals/bulk/{batch_id}/events"
            ws_connected, sse_connected = anyio.Event(), anyio.Event()
            results: dict[str, Any] = {}

            async def websocket() -> None:
                results["ws"] = await watch_websocket(ws_url, ws_connected)

            async def sse() -> None:
                results["sse"] = await watch_sse(sse_url, sse_connected)

            with anyio.fail_after(PATIENCE):
                async with anyio.create_task_group() as group:
                    group.start_soon(websocket)
                    group.start_soon(sse)
                    await ws_connected.wait()
                    await sse_connected.wait()
                    stopped_at = time.monotonic()
                    first.terminate()
                    code = await first.exit_code()
                    took = time.monotonic() - stopped_at
            output = first.output()

        left = await read_job(store, batch_id)
        with Serve(args, tmp_path, {}) as second:
            async with httpx.AsyncClient(base_url=second.url, timeout=PATIENCE) as api:
                final = await finished(api, batch_id, seconds=PATIENCE)
            second.terminate()
            second_code = await second.exit_code()
        held = await hospitals_upstream(upstream)
        stats = await standin_stats(upstream)

    assert 0 == code, output
    assert took < GRACE + 20, output  # the grace, and generous room for a slow machine
    messages, close_code = results["ws"]
    assert "snapshot" == messages[0]["type"]
    assert ("service.stopping", batch_id) == (messages[-1]["type"], messages[-1]["batch_id"])
    seen = [message["seq"] for message in messages if message["type"] == "event"]
    assert messages[-1]["seq"] == (seen[-1] if seen else messages[0]["seq"])
    assert 1001 == close_code
    events = results["sse"]
    assert "snapshot" == events[0]["event"]
    assert "service.stopping" == events[-1]["event"]
    assert int([event for event in events if "id" in event][-1]["id"]) == events[-1]["data"]["seq"]
    assert JobState.INTERRUPTED == left.state
    assert 4 <= left.progress.created < 40
    assert 0 == left.progress.unknown

    assert 0 == second_code, second.output()
    assert ("completed", 40, 2) == (final["state"], final["progress"]["activated"], final["runs"])
    assert once_each(rows) == dict(copies_by_row(held, final["creation_batch_ids"]))
    assert 40 == len(held)
    assert all(h["active"] for h in held)
    assert 40 == stats["calls"]["create"]


async def test_a_pending_job_of_a_dead_process_is_started_by_the_next_one(
    directory: UvicornServer, tmp_path: Path
) -> None:
    """A job accepted (pending) by a process that died before starting it is started by
    the next process on the same file, once it has waited longer than a lease: it
    completes, each row upstream once."""
    store = f"sqlite:///{tmp_path / 'jobs.sqlite3'}"
    rows = records(5, prefix="Orphan")
    job_store = await open_store(store)
    # Accepted for this directory: a job is run only against its own.
    accepting = BulkProcessor(store=job_store, directory=directory.url)
    try:
        job = await accepting.submit(csv_bytes(rows))
    finally:
        await accepting.aclose()
        await job_store.aclose()
    await anyio.sleep(1.2)  # longer than the lease below: nobody is starting it

    async with standin_client(directory.url) as upstream:
        env = {"HOSPITAL_BULK_LEASE_TTL": "1"}
        with Serve(serve_args(directory, store), tmp_path, env) as service:
            async with httpx.AsyncClient(base_url=service.url, timeout=PATIENCE) as api:
                final = await finished(api, job.id, seconds=PATIENCE)
        held = await hospitals_upstream(upstream)

    assert ("completed", 5, 1) == (final["state"], final["progress"]["activated"], final["runs"])
    assert once_each(rows) == dict(copies_by_row(held, final["creation_batch_ids"]))


async def read_job(store_url: str, job_id: str) -> Any:
    """The job as the store holds it (the service being down)."""
    store = await open_store(store_url)
    try:
        return await store.get_job(job_id)
    finally:
        await store.aclose()
