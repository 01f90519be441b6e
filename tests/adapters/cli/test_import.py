"""``hospital-bulk import FILE``: a job in this process, its summary, its exit status."""

from __future__ import annotations

import collections
import csv
import json
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from hospital_bulk_cli import app
from tests.servers import UvicornServer

from .conftest import FAST, copies_upstream, example_records, inject, upstream_hospitals


def events_of(stdout: str) -> list[dict[str, Any]]:
    """Every line of ``--json`` output, parsed: each must be one JSON object."""
    return [json.loads(line) for line in stdout.splitlines()]


def test_embedded_import_creates_and_activates_everything(
    runner: CliRunner, example: Path, store: str
) -> None:
    """Offline, every row is created and activated: the summary says so, exit status 0."""
    result = runner.invoke(
        app, ["import", str(example), "--directory", "embedded", *FAST, "--store", store]
    )

    assert 0 == result.exit_code, result.output
    assert "30 hospitals in 2 upstream batches → the embedded directory" in result.stdout
    summary = {
        cells[0].strip(): cells[1].strip()
        for line in result.stdout.splitlines()
        if len(cells := line.strip("│ ").split("│")) == 2
    }
    assert "completed" == summary["state"]
    assert ("30", "0") == (summary["created and activated"], summary["failed"])
    assert not (example.parent / "hospitals.failed.csv").exists()


def test_json_prints_one_event_per_line_then_the_summary(
    runner: CliRunner, example: Path, store: str
) -> None:
    """`--json`: every line is a JSON event of the job, in order, and the last the summary."""
    result = runner.invoke(
        app, ["import", str(example), "--json", "--directory", "embedded", *FAST, "--store", store]
    )

    assert 0 == result.exit_code, result.output
    *events, summary = events_of(result.stdout)
    assert list(range(1, len(events) + 1)) == [event["seq"] for event in events]
    assert 1 == len({event["job_id"] for event in events})
    kinds = collections.Counter(event["type"] for event in events)
    assert (1, 30, 2, 1) == (
        kinds["job.accepted"],
        kinds["row.created"],
        kinds["batch.activated"],
        kinds["job.finished"],
    )
    assert {"total": 30, "created": 30, "activated": 30, "failed": 0, "unknown": 0} == {
        key: value for key, value in events[-1]["progress"].items() if key != "rate"
    }
    assert "cli.summary" == summary["type"]
    assert (0, None, None) == (
        summary["exit_code"],
        summary["failed_rows_file"],
        summary["resume_command"],
    )
    assert ("completed", 30, 30) == (
        summary["summary"]["state"],
        summary["summary"]["total_hospitals"],
        summary["summary"]["processed_hospitals"],
    )


def test_an_invalid_file_imports_nothing_and_exits_1(
    runner: CliRunner, tmp_path: Path, store: str
) -> None:
    """The findings table, nothing created, no job stored, exit status 1."""
    path = tmp_path / "broken.csv"
    path.write_text("name,address\nGeneral Hospital,\n")

    result = runner.invoke(app, ["import", str(path), "--directory", "embedded", "--store", store])
    jobs = runner.invoke(app, ["jobs", "--json", "--store", store])

    assert 1 == result.exit_code
    assert "missing_value" in result.stdout
    assert "Nothing was imported." in result.stdout
    assert "" == jobs.stdout


def test_an_invalid_file_in_json(runner: CliRunner, tmp_path: Path, store: str) -> None:
    """With `--json`, the report is one line of type cli.invalid_file."""
    path = tmp_path / "broken.csv"
    path.write_text("name,address\nGeneral Hospital,\n")

    result = runner.invoke(
        app, ["import", str(path), "--json", "--directory", "embedded", "--store", store]
    )

    assert 1 == result.exit_code
    [line] = events_of(result.stdout)
    assert ("cli.invalid_file", False, ["missing_value"]) == (
        line["type"],
        line["valid"],
        [error["code"] for error in line["errors"]],
    )


def test_a_cp1252_file_from_standard_input_keeps_its_names(
    runner: CliRunner, tmp_path: Path, store: str, standin: UvicornServer
) -> None:
    """`import - --encoding cp1252`: Excel's file on standard input, its accents and en
    dash intact upstream; the job's file is stdin, failed rows would go to
    ./stdin.failed.csv."""
    data = (
        "name,address\nClínica São José,Rua das Flores 10\nHôpital \u2013 Nord,2 rue du Nord\n"
    ).encode("cp1252")

    refused = runner.invoke(
        app, ["import", "-", "--api", standin.url, "--store", store], input=data
    )
    result = runner.invoke(
        app,
        ["import", "-", "--encoding", "cp1252", "--api", standin.url, "--store", store, "--json"],
        input=data,
    )

    assert 1 == refused.exit_code
    assert "encoding=cp1252" in refused.stdout
    assert 0 == result.exit_code, result.output
    assert ["Clínica São José", "Hôpital \u2013 Nord"] == sorted(
        str(h["name"]) for h in upstream_hospitals(standin.url)
    )
    job_id = events_of(result.stdout)[-1]["summary"]["job_id"]
    status = runner.invoke(app, ["status", job_id, "--store", store, "--json"])
    assert "stdin" == json.loads(status.stdout)["job"]["file_name"]


def test_a_semicolon_file_with_a_delimiter_from_standard_input(
    runner: CliRunner, store: str
) -> None:
    """`--delimiter ';'` keeps the commas inside values."""
    data = b"name;address\nGeneral Hospital;1 Main St, Springfield\n"

    result = runner.invoke(
        app,
        ["import", "-", "--delimiter", ";", "--directory", "embedded", *FAST, "--store", store],
        input=data,
    )

    assert 0 == result.exit_code, result.output
    assert "Importing stdin: 1 hospitals" in result.stdout


def test_a_missing_file_exits_1(runner: CliRunner, tmp_path: Path, store: str) -> None:
    """Not click's usage error (2 means partial here): a plain error, exit status 1."""
    result = runner.invoke(app, ["import", str(tmp_path / "nope.csv"), "--store", store])

    assert 1 == result.exit_code
    assert "no such file" in result.stderr


def test_against_the_standin_on_a_socket_the_upstream_holds_the_file(
    runner: CliRunner, example: Path, store: str, standin: UvicornServer
) -> None:
    """Over HTTP to the stand-in directory in its own process: afterwards it holds exactly
    the file's hospitals, each once, all active."""
    result = runner.invoke(app, ["import", str(example), "--api", standin.url, "--store", store])

    assert 0 == result.exit_code, result.output
    hospitals = upstream_hospitals(standin.url)
    assert collections.Counter(example_records()) == copies_upstream(hospitals)
    assert all(hospital["active"] for hospital in hospitals)


def test_a_partial_import_writes_the_failed_rows_and_exits_2(
    runner: CliRunner, example: Path, store: str, standin: UvicornServer
) -> None:
    """A row the directory rejects: exit status 2, the row in FILE.failed.csv with its
    reason; that file, imported again, completes the rest."""
    inject(standin.url, "reject", name="Summit Heart Institute")

    # Unpaced: the stand-in has no limit, and the store remembers the first import's
    # creates, so the second would otherwise wait out their minute.
    unpaced = ["--api", standin.url, "--store", store, "--rate-limit", "0"]
    result = runner.invoke(app, ["import", str(example), *unpaced])

    assert 2 == result.exit_code, result.output
    failed = example.parent / "hospitals.failed.csv"
    with failed.open(newline="") as file:
        rows = list(csv.DictReader(file))
    assert [("Summit Heart Institute", "8", "rejected")] == [
        (row["name"], row["row"], row["error_code"]) for row in rows
    ]
    assert "1 failed row(s) written to" in result.stdout
    assert "Or retry them in this job instead: hospital-bulk resume" in result.stdout

    again = runner.invoke(app, ["import", str(failed), *unpaced])

    assert 0 == again.exit_code, again.output
    assert "unknown_column" in again.stdout  # the reason columns are ignored, with a warning
    names = [hospital["name"] for hospital in upstream_hospitals(standin.url)]
    assert 1 == names.count("Summit Heart Institute")


def test_nothing_created_exits_1_and_failed_out_names_the_file(
    runner: CliRunner, example: Path, store: str, standin: UvicornServer, tmp_path: Path
) -> None:
    """Every create rejected: the job failed, exit status 1; `--failed-out` picks the path."""
    inject(standin.url, "reject", times=30)
    out = tmp_path / "out" / "again.csv"

    result = runner.invoke(
        app,
        ["import", str(example), "--api", standin.url, "--store", store, "--failed-out", str(out)],
    )

    assert 1 == result.exit_code, result.output
    with out.open(newline="") as file:
        assert 30 == len(list(csv.DictReader(file)))
    assert [] == upstream_hospitals(standin.url)
