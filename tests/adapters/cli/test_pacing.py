"""Pacing shared through one SQLite file, between real processes (issue 10, item 4).

Each import is ``hospital-bulk import`` in a subprocess; the directory is the stand-in
in another, its creates limited by a sliding log (the strictest limiter: any burst
across the edge of a window we opened ourselves would be a 429). Every process calls
from 127.0.0.1, so they all draw on one per-address limit, as processes on one host
do upstream. The stand-in's count of 429s is the proof.
"""

from __future__ import annotations

import collections
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from hospital_bulk import RateLimit
from tests.servers import UvicornServer

from .conftest import QUICK_STANDIN, STANDIN, Cli, upstream_hospitals

#: The directory's create limit, and the processes' pacing: small, so tests take seconds;
#: a window long enough that a process starting after another has finished still
#: starts inside the window of the first one's creates.
LIMIT = RateLimit(5, 4.0)
SLIDING = {
    **QUICK_STANDIN,
    "HOSPITAL_DIRECTORY_LATENCY": "0.05",
    "HOSPITAL_DIRECTORY_CREATE_LIMIT": f"{LIMIT.count}/{LIMIT.window:g}",
    "HOSPITAL_DIRECTORY_LIMIT_MODE": "sliding",
}


@pytest.fixture(name="sliding_standin_server", scope="module")
def fixture_sliding_standin_server() -> Iterator[UvicornServer]:
    with UvicornServer(STANDIN, env=SLIDING) as server:
        yield server


@pytest.fixture(name="sliding_standin")
def fixture_sliding_standin(sliding_standin_server: UvicornServer) -> UvicornServer:
    """The stand-in with a sliding create limit, empty, its stats at zero."""
    url = sliding_standin_server.url
    httpx.post(f"{url}/_standin/reset", timeout=10).raise_for_status()
    return sliding_standin_server


def csv_file(path: Path, prefix: str, rows: int) -> Path:
    lines = ["name,address,phone"]
    lines += [f"{prefix} {n},{n} Pace Street,555-{n:04d}" for n in range(1, rows + 1)]
    path.write_text("\n".join(lines) + "\n")
    return path


def import_args(path: Path, api: str, store: str) -> list[str]:
    return [
        "import",
        str(path),
        "--json",
        "--api",
        api,
        "--store",
        store,
        "--rate-limit",
        str(LIMIT.count),
        "--rate-window",
        str(LIMIT.window),
        "--concurrency",
        str(LIMIT.count),
    ]


def finish(cli: Cli) -> dict[str, object]:
    """Wait for an import; its summary, which must say it completed."""
    assert 0 == cli.wait(timeout=90), cli.output()
    summary: dict[str, object] = json.loads(cli.lines[-1])["summary"]
    assert "completed" == summary["state"], cli.output()
    return summary


def stats(api: str) -> dict[str, object]:
    response = httpx.get(f"{api}/_standin/stats", timeout=10)
    response.raise_for_status()
    answer: dict[str, object] = response.json()
    return answer


def names_upstream(api: str) -> collections.Counter[object]:
    return collections.Counter(hospital["name"] for hospital in upstream_hospitals(api))


def test_two_processes_on_one_sqlite_file_pace_together(
    sliding_standin: UvicornServer, store: str, environ: dict[str, str], tmp_path: Path
) -> None:
    """Two imports of 7 rows at the same moment, each paced to 5 creates per 4 s, on one
    SQLite file: together they keep to 5 per 4 s, so the directory never answers 429.
    (Each pacing alone would send 10 in the first second.)"""
    api = sliding_standin.url
    files = [csv_file(tmp_path / f"{name}.csv", name, 7) for name in ("North", "South")]

    with (
        Cli(import_args(files[0], api, store), environ, tmp_path) as north,
        Cli(import_args(files[1], api, store), environ, tmp_path) as south,
    ):
        finish(north)
        finish(south)

    seen = stats(api)
    assert 0 == seen["throttled"]
    assert 14 == seen["hospitals"]
    assert {f"{name} {n}": 1 for name in ("North", "South") for n in range(1, 8)} == dict(
        names_upstream(api)
    )


def test_a_restarted_process_knows_what_was_sent_in_the_window(
    sliding_standin: UvicornServer, store: str, environ: dict[str, str], tmp_path: Path
) -> None:
    """One import sends 3 creates and exits; another, on the same SQLite file, starts at
    once with 7 rows: it sends 2, then waits for the window of the first one's creates
    to pass. The directory never answers 429. (Pacing that forgot at exit would send 5
    at once: 8 within 4 s.)"""
    api = sliding_standin.url
    before = csv_file(tmp_path / "before.csv", "Before", LIMIT.count - 2)
    after = csv_file(tmp_path / "after.csv", "After", 7)

    with Cli(import_args(before, api, store), environ, tmp_path) as first:
        finish(first)
    with Cli(import_args(after, api, store), environ, tmp_path) as second:
        finish(second)

    seen = stats(api)
    assert 0 == seen["throttled"]
    assert 10 == seen["hospitals"]
