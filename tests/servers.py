"""Real servers for tests: uvicorn in a subprocess, or in a thread of this process.

For end-to-end tests (a service and a stand-in directory, each its own process)::

    with UvicornServer("hospital_bulk_standin.app:app", env=...) as directory:
        env = {"HOSPITAL_API_BASE": directory.url}
        with run_uvicorn("hospital_bulk_fastapi.main:app", env=env) as url:
            ...
        directory.kill()      # kill -9: connections are refused from now on
        directory.restart()   # same port, same settings, a fresh (empty) process

To reach an app object over a real socket and keep its state at hand (the
directory contract suite does this), serve it in a thread with :func:`serve_in_thread`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Self

import uvicorn
from starlette.types import ASGIApp

__all__ = ["UvicornServer", "free_port", "run_uvicorn", "serve_in_thread"]

HOST = "127.0.0.1"
#: Where subprocesses start, so that ``tests.something:app`` imports.
ROOT = Path(__file__).resolve().parents[1]


def free_port(host: str = HOST) -> int:
    """A TCP port nothing listens on right now (the OS picks it)."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


class UvicornServer:
    """``python -m uvicorn APP_PATH`` in a subprocess, as a handle tests can crash.

    ``env`` is added to this process's environment; ``args`` are more uvicorn
    options (``["--workers", "2"]``, say). The port is ``port`` or a free one, kept
    across :meth:`restart` so that ``url`` stays valid. The server runs in its own
    process group: :meth:`kill` reaches its workers too. Its output (access log
    and errors) goes to a file: :meth:`output`.
    """

    def __init__(
        self,
        app_path: str,
        *,
        env: Mapping[str, str] | None = None,
        port: int | None = None,
        host: str = HOST,
        args: Sequence[str] = (),
        startup_timeout: float = 20.0,
        grace: float = 5.0,
    ) -> None:
        self.app_path = app_path
        self.env = dict(env or {})
        self.host = host
        self.port = free_port(host) if port is None else port
        self.url = f"http://{host}:{self.port}"
        self.args = list(args)
        self.startup_timeout = startup_timeout
        self.grace = grace
        self._process: subprocess.Popen[bytes] | None = None
        self._logs = tempfile.TemporaryDirectory(prefix="uvicorn-")
        self._log: Path | None = None
        self._starts = 0

    @property
    def process(self) -> subprocess.Popen[bytes]:
        """The running (or last) server process."""
        if self._process is None:
            raise RuntimeError("the server was never started")
        return self._process

    @property
    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> Self:
        """Start the server and return once it accepts connections.

        Raises ``RuntimeError`` with the server's output if it exits first or is
        not up within ``startup_timeout`` seconds.
        """
        if self.alive:
            raise RuntimeError(f"{self.app_path} already runs at {self.url}")
        self._starts += 1
        self._log = Path(self._logs.name) / f"start-{self._starts}.log"
        command = [sys.executable, "-m", "uvicorn", self.app_path]
        command += ["--host", self.host, "--port", str(self.port), *self.args]
        with self._log.open("ab") as log:  # the child keeps its own copy of the descriptor
            self._process = subprocess.Popen(
                command,
                cwd=ROOT,
                env={**os.environ, **self.env},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._wait_until_up()
        return self

    def _wait_until_up(self) -> None:
        # uvicorn binds its socket only once the app has started: a connection
        # accepted means ready, and touches no route (no stats, no rate limit).
        deadline = time.monotonic() + self.startup_timeout
        while True:
            if not self.alive:
                self.process.wait()
                raise RuntimeError(
                    f"{self.app_path} exited with {self.process.returncode} before serving:\n"
                    + self.output()
                )
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5):
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(
                    f"{self.app_path} was not up after {self.startup_timeout} s:\n" + self.output()
                )
            time.sleep(0.05)

    def stop(self) -> None:
        """Ask the server to shut down (SIGTERM); kill it after ``grace`` seconds.

        uvicorn waits for requests in flight (a slow create, say) before it exits.
        """
        if self._process is None or self._process.poll() is not None:
            return
        self._process.terminate()
        try:
            self._process.wait(self.grace)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """Crash the server now (SIGKILL to its process group): no shutdown, no goodbyes."""
        # Once reaped, its pid (and so its group id) may belong to someone else.
        if self._process is None or self._process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):  # a group already empty
            os.killpg(self._process.pid, signal.SIGKILL)
        self._process.wait()

    def restart(self) -> Self:
        """Stop the server if it runs, then start a fresh one on the same port."""
        self.stop()
        return self.start()

    def output(self) -> str:
        """What the server has printed so far: startup lines, access log, errors."""
        if self._log is None or not self._log.exists():
            return ""
        return self._log.read_text(errors="replace")

    def close(self) -> None:
        """Stop the server and delete its output."""
        try:
            self.stop()
        finally:
            self._logs.cleanup()

    def __enter__(self) -> Self:
        try:
            return self.start()
        except BaseException:
            self._logs.cleanup()
            raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


@contextmanager
def run_uvicorn(
    app_path: str, *, env: Mapping[str, str] | None = None, port: int | None = None
) -> Iterator[str]:
    """Serve ``app_path`` (``module:attribute``) in a uvicorn subprocess; yield its base URL.

    For a handle that can also crash or restart the server, use :class:`UvicornServer`.
    """
    with UvicornServer(app_path, env=env, port=port) as server:
        yield server.url


@contextmanager
def serve_in_thread(app: ASGIApp, *, host: str = HOST, timeout: float = 10.0) -> Iterator[str]:
    """Serve ``app`` with uvicorn on a real socket, in a thread; yield its base URL.

    The app object stays in this process, so a test can look at its state; the
    server's log records go to this process's logging (pytest captures them).
    """
    # With proto 0 asyncio would leave Nagle on: every answer would wait for a delayed ACK.
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((host, 0))
    port = listener.getsockname()[1]
    # Requests still running a second after the test are abandoned ones: cancel them.
    config = uvicorn.Config(app, log_config=None, access_log=False, timeout_graceful_shutdown=1)
    server = uvicorn.Server(config)
    failure: list[BaseException] = []

    def run() -> None:
        try:
            asyncio.run(server.serve(sockets=[listener]))
        except BaseException as exc:  # reported by the waiting thread, not lost in this one
            failure.append(exc)

    thread = threading.Thread(target=run, name=f"uvicorn:{port}", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + timeout
        while not server.started:
            if failure or not thread.is_alive():
                raise RuntimeError(f"the server thread died: {failure[:1]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the server thread was not up after {timeout} s")
            time.sleep(0.005)
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout)
        listener.close()
        if thread.is_alive():
            raise RuntimeError("the server thread did not stop")
        if failure:
            raise RuntimeError("the server thread failed") from failure[0]
