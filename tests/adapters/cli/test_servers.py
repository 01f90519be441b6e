"""``serve`` and ``directory``: real servers from the command line, sharing the store."""

from __future__ import annotations

import json
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from hospital_bulk_cli import app, main
from hospital_bulk_cli.demo import example_csv
from tests.servers import free_port

from .conftest import FAST, Cli


def wait_until_listening(cli: Cli, port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if cli.process.poll() is not None:
            raise AssertionError(f"exited with {cli.process.returncode}:\n{cli.output()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@pytest.fixture(name="service")
def fixture_service(store: str, environ: dict[str, str], tmp_path: Path) -> Iterator[str]:
    """`hospital-bulk serve` on the embedded directory and this test's store; its URL."""
    port = free_port()
    args = ["serve", "--port", str(port), "--directory", "embedded", *FAST, "--store", store]
    with Cli([*args, "--log-level", "warning"], environ, tmp_path) as cli:
        wait_until_listening(cli, port)
        yield f"http://127.0.0.1:{port}"
        cli.process.send_signal(signal.SIGINT)
        assert 0 == cli.wait(), cli.output()


def test_a_job_uploaded_to_the_service_is_seen_from_the_shell(
    service: str, runner: CliRunner, store: str
) -> None:
    """The service and the command line share the store: `status` shows the service's job."""
    response = httpx.post(
        f"{service}/hospitals/bulk",
        files={"file": ("uploaded.csv", example_csv(), "text/csv")},
        timeout=30,
    )
    assert 200 == response.status_code, response.text
    job_id = response.json()["batch_id"]

    result = runner.invoke(app, ["status", job_id, "--json", "--store", store])

    assert 0 == result.exit_code, result.output
    job = json.loads(result.stdout)["job"]
    assert ("completed", "uploaded.csv", 30) == (job["state"], job["file_name"], job["total_rows"])


def test_a_job_imported_from_the_shell_is_seen_by_the_service(
    service: str, runner: CliRunner, store: str, example: Path
) -> None:
    """…and the other way round: the service reports a job the command line ran."""
    result = runner.invoke(
        app, ["import", str(example), "--json", "--directory", "embedded", *FAST, "--store", store]
    )
    job_id = json.loads(result.stdout.splitlines()[-1])["summary"]["job_id"]

    response = httpx.get(f"{service}/bulk/status/{job_id}", timeout=10)

    assert 200 == response.status_code
    assert job_id == response.json()["batch_id"]


def test_serve_refuses_invalid_settings(runner: CliRunner) -> None:
    """A setting the service would refuse is exit status 1 before anything listens."""
    result = runner.invoke(app, ["serve", "--api", "ftp://example.com"])

    assert 1 == result.exit_code
    assert "error: --api: use an absolute http(s) URL or 'embedded'" == (result.stderr.strip())


def test_directory_serves_the_standin(environ: dict[str, str], tmp_path: Path) -> None:
    """`hospital-bulk directory`: the upstream's API on a port; `--no-admin` hides
    /_standin/; Ctrl-C stops it with exit status 0."""
    port = free_port()
    args = ["directory", "--port", str(port), "--latency", "0", "--no-admin"]
    with Cli([*args, "--log-level", "warning"], environ, tmp_path) as cli:
        wait_until_listening(cli, port)
        base = f"http://127.0.0.1:{port}"
        created = httpx.post(
            f"{base}/hospitals/", json={"name": "General", "address": "1 Main St"}, timeout=10
        )
        stats = httpx.get(f"{base}/_standin/stats", timeout=10)
        cli.process.send_signal(signal.SIGINT)

        assert 0 == cli.wait(), cli.output()
    assert (200, True) == (created.status_code, created.json()["active"])
    assert 404 == stats.status_code


def test_directory_rejects_a_bad_rate_limit(capsys: pytest.CaptureFixture[str]) -> None:
    """A limit that is not COUNT/SECONDS is a usage error: exit status 64, nothing served."""
    with pytest.raises(SystemExit) as exit_info:
        main(["directory", "--rate-limit", "fast"])

    assert 64 == exit_info.value.code
    assert "a rate limit is COUNT/SECONDS" in capsys.readouterr().err
