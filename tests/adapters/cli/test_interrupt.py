"""Ctrl-C during ``hospital-bulk import``: a clean stop, a resumable job, then ``resume``.

The import runs in a subprocess and gets a real SIGINT. It talks to the stand-in
directory in another process, so that the resume, in a third process, finds the
hospitals the first one created (the embedded directory would end with its process).
"""

from __future__ import annotations

import collections
import json
import shlex
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.servers import UvicornServer

from .conftest import (
    QUICK_STANDIN,
    SCRIPT,
    STANDIN,
    Cli,
    copies_upstream,
    example_records,
    upstream_hospitals,
)

#: Slow enough creates, few at a time: the import is surely mid-way when interrupted,
#: and still has creates in flight when a second Ctrl-C follows the first.
SLOW = {**QUICK_STANDIN, "HOSPITAL_DIRECTORY_LATENCY": "0.5"}


@pytest.fixture(name="slow_standin_server", scope="module")
def fixture_slow_standin_server() -> Iterator[UvicornServer]:
    with UvicornServer(STANDIN, env=SLOW) as server:
        yield server


@pytest.fixture(name="slow_standin")
def fixture_slow_standin(slow_standin_server: UvicornServer) -> UvicornServer:
    """The slow stand-in, empty."""
    httpx.post(f"{slow_standin_server.url}/_standin/reset", timeout=10).raise_for_status()
    return slow_standin_server


def created(line: str) -> bool:
    return bool(json.loads(line)["type"] == "row.created")


def run_until_interrupted(
    args: list[str], env: dict[str, str], workdir: Path, *, signals: int
) -> tuple[int, dict[str, Any]]:
    """Start an import, let it create 4 rows, send ``signals`` SIGINTs; its exit status
    and its summary line."""
    with Cli(args, env, workdir) as cli:
        for _ in range(4):
            cli.read_until(created)
        for _ in range(signals):
            # One at a time, as a person presses: signals sent together may merge into one.
            cli.process.send_signal(signal.SIGINT)
            cli.read_until(lambda line: json.loads(line)["type"] == "cli.cancel_requested")
        code = cli.wait()
        summary = json.loads(cli.lines[-1])
        assert "cli.summary" == summary["type"], cli.output()
    return code, summary


@pytest.mark.parametrize(
    ("signals", "state"), [(1, "cancelled"), (2, "interrupted")], ids=["once", "twice"]
)
def test_ctrl_c_leaves_a_job_that_resume_completes(
    slow_standin: UvicornServer,
    example: Path,
    store: str,
    environ: dict[str, str],
    tmp_path: Path,
    signals: int,
    state: str,
) -> None:
    """Once: no new creates, those in flight finish, the job is cancelled. Twice: it stops
    at once and is interrupted, its in-flight rows unknown. Either way exit status 130 and
    a resume command that, run as printed, completes the job with each hospital once."""
    api = slow_standin.url
    # The resume lists a batch only once its interrupted creates can no longer land:
    # a short client timeout keeps that wait short.
    environ = {
        **environ,
        "HOSPITAL_BULK_DIRECTORY_TIMEOUT": "3",
        "HOSPITAL_BULK_LANDING_MARGIN": "1",
    }
    import_args = ["import", str(example), "--json", "--api", api, "--store", store]
    import_args += ["--rate-limit", "0", "--concurrency", "2"]

    code, summary = run_until_interrupted(import_args, environ, tmp_path, signals=signals)

    assert 130 == code
    assert state == summary["summary"]["state"]
    before = len(upstream_hospitals(api))
    assert 4 <= before < 30
    command = shlex.split(str(summary["resume_command"]))
    assert ["hospital-bulk", "resume"] == command[:2]
    assert ["--store", store, "--api", api] == command[3:]

    with Cli([*command[1:], "--json"], environ, tmp_path) as resume:
        assert 0 == resume.wait(), resume.output()
        result = json.loads(resume.lines[-1])

    assert ("completed", 0) == (result["summary"]["state"], result["exit_code"])
    hospitals = upstream_hospitals(api)
    assert collections.Counter(example_records()) == copies_upstream(hospitals)
    assert all(hospital["active"] for hospital in hospitals)


def test_the_console_script_is_installed() -> None:
    """The subprocess tests run the real entry point, `hospital-bulk`."""
    assert SCRIPT.exists()
