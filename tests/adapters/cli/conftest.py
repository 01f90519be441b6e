"""What the command-line tests share: an isolated environment, a runner, files, servers."""

from __future__ import annotations

import collections
import csv
import io
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from hospital_bulk_cli.demo import example_csv
from tests.servers import UvicornServer

#: The console script, as installed beside this interpreter.
SCRIPT = Path(sys.executable).with_name("hospital-bulk")
STANDIN = "hospital_bulk_standin.app:app"
#: The stand-in with no latency and no rate limit: nothing to wait for.
QUICK_STANDIN = {
    "HOSPITAL_DIRECTORY_LATENCY": "0",
    "HOSPITAL_DIRECTORY_CREATE_LIMIT": "0",
    "HOSPITAL_DIRECTORY_OTHER_LIMIT": "0",
    "HOSPITAL_DIRECTORY_ADMIN": "1",
}
#: Every create of the embedded directory takes this long in tests.
FAST = ["--embedded-latency", "0.01"]


def clean_environ(data_home: Path) -> dict[str, str]:
    """This process's environment without any HOSPITAL_* setting, its data in ``data_home``."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("HOSPITAL_")}
    env["XDG_DATA_HOME"] = str(data_home)
    env["COLUMNS"] = "200"  # wide tables: no name is folded across lines
    return env


@pytest.fixture(name="environ", autouse=True)
def fixture_environ(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """No developer setting leaks in, and the default store is a file of this test."""
    env = clean_environ(tmp_path / "data")
    for key in os.environ:
        if key.startswith("HOSPITAL_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("XDG_DATA_HOME", env["XDG_DATA_HOME"])
    monkeypatch.setenv("COLUMNS", env["COLUMNS"])
    return env


@pytest.fixture(name="runner")
def fixture_runner() -> CliRunner:
    return CliRunner()


@pytest.fixture(name="store")
def fixture_store(tmp_path: Path) -> str:
    """A SQLite store of this test, as a URL."""
    return f"sqlite:///{tmp_path / 'jobs.sqlite3'}"


@pytest.fixture(name="example")
def fixture_example(tmp_path: Path) -> Path:
    """The bundled example file, copied where the test may write beside it."""
    path = tmp_path / "hospitals.csv"
    path.write_bytes(example_csv())
    return path


@pytest.fixture(name="standin_server", scope="session")
def fixture_standin_server() -> Iterator[UvicornServer]:
    """The stand-in directory in its own process, quick, with the admin endpoints."""
    with UvicornServer(STANDIN, env=QUICK_STANDIN) as server:
        yield server


@pytest.fixture(name="standin")
def fixture_standin(standin_server: UvicornServer) -> UvicornServer:
    """The stand-in, empty and without faults, as a restarted upstream is."""
    httpx.post(f"{standin_server.url}/_standin/reset", timeout=10).raise_for_status()
    return standin_server


def example_records() -> list[tuple[str, str, str | None]]:
    """(name, address, phone) of each row of the bundled file."""
    rows = csv.DictReader(io.StringIO(example_csv().decode()))
    return [(row["name"], row["address"], row["phone"] or None) for row in rows]


def copies_upstream(
    hospitals: list[dict[str, object]],
) -> collections.Counter[tuple[object, object, object]]:
    """How many hospitals the directory holds per (name, address, phone)."""
    return collections.Counter((h["name"], h["address"], h["phone"]) for h in hospitals)


def upstream_hospitals(base_url: str) -> list[dict[str, object]]:
    """Every hospital the stand-in holds, as it answers ``GET /hospitals/``."""
    response = httpx.get(f"{base_url}/hospitals/", timeout=10)
    response.raise_for_status()
    hospitals: list[dict[str, object]] = response.json()
    return hospitals


def inject(base_url: str, fault: str, *, name: str | None = None, times: int = 1) -> None:
    """Make the stand-in fail the next ``times`` creates (of ``name`` only, if given)."""
    body = {"fault": fault, "operation": "create", "times": times, "name": name}
    httpx.post(f"{base_url}/_standin/faults", json=body, timeout=10).raise_for_status()


class Cli:
    """``hospital-bulk`` in a subprocess, its stdout read line by line as it comes.

    Its stderr goes to a file (a pipe nobody reads could fill up and block it).
    """

    def __init__(self, args: Sequence[str], env: dict[str, str], workdir: Path) -> None:
        self._stderr = (workdir / f"stderr-{time.monotonic_ns()}.txt").open("w+")
        self.process = subprocess.Popen(
            [str(SCRIPT), *args],
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            stdin=subprocess.DEVNULL,
            env=env,
            text=True,
        )
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def read_until(self, predicate: Callable[[str], bool], timeout: float = 20.0) -> str:
        """Read stdout until a line satisfies ``predicate``; fail if it ends first."""
        deadline = time.monotonic() + timeout
        while True:
            line = self._queue.get(timeout=max(0.01, deadline - time.monotonic()))
            if line is None:
                raise AssertionError(f"stdout ended first:\n{self.output()}")
            self.lines.append(line)
            if predicate(line):
                return line

    def wait(self, timeout: float = 30.0) -> int:
        """The exit status, once the rest of stdout is read."""
        while (line := self._queue.get(timeout=timeout)) is not None:
            self.lines.append(line)
        return self.process.wait(timeout)

    def output(self) -> str:
        self._stderr.seek(0)
        return "\n".join(self.lines) + "\n--- stderr ---\n" + self._stderr.read()

    def __enter__(self) -> Cli:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()
        self._stderr.close()
