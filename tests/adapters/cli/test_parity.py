"""The service and the command line decide alike: the same jobs, resumed through each,
get the same decision (run, resume or conflict), end the same, and offer the same
rows for re-import. Both only apply the library's rules."""

from __future__ import annotations

import csv
import io
import warnings
from pathlib import Path

import anyio
import pytest
from typer.testing import CliRunner

from hospital_bulk import BulkProcessor, HttpDirectoryClient, ProcessorSettings
from hospital_bulk.stores import open_store
from hospital_bulk_cli import app
from hospital_bulk_fastapi import ServiceSettings, create_app
from tests.servers import UvicornServer

from .conftest import inject

with warnings.catch_warnings():
    # Starlette 1.x nudges towards httpx2; the TestClient works the same on httpx.
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

UNPACED = ProcessorSettings(create_limit=None, other_limit=None)
#: How each job is left before the adapters see it, and what resuming it then does.
STATES = ("pending", "cancelled", "failed", "completed_with_errors", "completed")
TWINS = ("service", "cli")


def names(state: str, twin: str) -> list[str]:
    return [f"{state} {twin} hospital {number}" for number in range(1, 4)]


async def prepare(store_url: str, api: str) -> dict[tuple[str, str], str]:
    """Two identical jobs in each state (one per adapter), against the stand-in."""
    store = await open_store(store_url)
    client = HttpDirectoryClient(api)
    processor = BulkProcessor(client, store, UNPACED)
    jobs = {}
    try:
        for state in STATES:
            for twin in TWINS:
                rows = names(state, twin)
                content = "".join(f"{name},1 Main St,555-0100\n" for name in rows)
                job = await processor.submit(content.encode(), file_name=f"{state}.csv")
                jobs[state, twin] = job.id
                if state == "cancelled":
                    await processor.cancel(job.id)
                elif state != "pending":
                    rejected = {"failed": rows, "completed_with_errors": rows[:1]}.get(state, [])
                    for name in rejected:
                        inject(api, "reject", name=name)
                    summary = await processor.run(job.id)
                    assert state == summary.state
    finally:
        await client.aclose()
        await store.aclose()
    return jobs


def rows_of(text: str, twin: str) -> list[tuple[str, str, str]]:
    """The three columns of a re-import file, with the twin's mark taken out of names."""
    lines = list(csv.reader(io.StringIO(text)))
    assert ["name", "address", "phone"] == lines[0][:3]
    return [
        (name.replace(f" {twin} ", " "), address, phone) for name, address, phone, *_ in lines[1:]
    ]


def test_the_service_and_the_cli_decide_alike(
    runner: CliRunner, store: str, standin: UvicornServer, tmp_path: Path
) -> None:
    """Pending, cancelled, failed, partial and completed jobs: each pair of twins gets
    the same re-import rows, the same answer to a resume and the same end."""
    jobs = anyio.run(prepare, store, standin.url)
    settings = ServiceSettings(api_base=standin.url, store=store, rate_limit=0)
    decisions: dict[str, list[tuple[object, ...]]] = {}

    with TestClient(create_app(settings)) as client:
        for state in STATES:
            served, from_cli = jobs[state, "service"], jobs[state, "cli"]

            answer = client.get(f"/hospitals/bulk/{served}/results.csv?status=failed")
            assert 200 == answer.status_code
            written = tmp_path / f"{state}.csv"
            shown = runner.invoke(
                app, ["status", from_cli, "--failed-out", str(written), "--store", store]
            )
            assert 0 == shown.exit_code, shown.output
            assert rows_of(answer.text, "service") == rows_of(written.read_text(), "cli")

            resumed = client.post(f"/hospitals/bulk/{served}/resume")
            ran = runner.invoke(
                app,
                ["resume", from_cli, "--api", standin.url, "--rate-limit", "0", "--store", store],
            )
            service_job = client.get(f"/bulk/status/{served}").json()
            cli_job = client.get(f"/bulk/status/{from_cli}").json()
            detail = resumed.json().get("detail", "") if resumed.status_code == 409 else ""
            decisions[state] = [
                (
                    {200: "ran", 409: "conflict"}[resumed.status_code],
                    detail.replace(served, "ID"),
                    service_job["state"],
                    service_job["runs"],
                ),
                (
                    {0: "ran", 1: "conflict"}[ran.exit_code],
                    ran.stderr.strip().removeprefix("error: ").replace(from_cli, "ID"),
                    cli_job["state"],
                    cli_job["runs"],
                ),
            ]

    for state, (service, cli) in decisions.items():
        assert service == cli, state
    assert {
        "pending": ("ran", "", "completed", 1),
        "cancelled": ("ran", "", "completed", 1),
        "failed": ("ran", "", "completed", 2),
        "completed_with_errors": ("ran", "", "completed", 2),
        "completed": (
            "conflict",
            "job 'ID' is completed: cannot run it: nothing is left to do",
            "completed",
            1,
        ),
    } == {state: pair[0] for state, pair in decisions.items()}


@pytest.mark.parametrize("state", ["completed_with_errors", "failed"])
def test_reimport_rows_are_those_surely_not_upstream(
    runner: CliRunner, store: str, standin: UvicornServer, tmp_path: Path, state: str
) -> None:
    """The re-import file holds the rejected rows and nothing that was created."""
    jobs = anyio.run(prepare, store, standin.url)
    written = tmp_path / "again.csv"

    result = runner.invoke(
        app, ["status", jobs[state, "cli"], "--failed-out", str(written), "--store", store]
    )

    assert 0 == result.exit_code, result.output
    rejected = names(state, "cli") if state == "failed" else names(state, "cli")[:1]
    assert rejected == [name for name, *_ in csv.reader(io.StringIO(written.read_text()))][1:]
