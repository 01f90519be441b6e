"""Every command the CLI prints as a next step is run here, as printed, and works."""

from __future__ import annotations

import collections
import re
import shlex
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from hospital_bulk_cli import app
from tests.servers import UvicornServer

from .conftest import Cli, copies_upstream, example_records, inject, upstream_hospitals

#: A hint as the CLI prints it: the command, to the end of its line.
HINT = re.compile(r"(hospital-bulk (?:import|resume|status) [^\n]+)")


def hints(output: str) -> dict[str, list[str]]:
    """The printed commands, by subcommand, as argument lists without the program name."""
    found: dict[str, list[str]] = {}
    for line in HINT.findall(output):
        words = shlex.split(line)
        found[words[1]] = words[1:]
    return found


@pytest.fixture(name="unpaced")
def fixture_unpaced(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every command unpaced (the stand-in has no limit), so that a hint run right after
    an import need not wait out the window of its creates, which the store remembers."""
    monkeypatch.setenv("HOSPITAL_BULK_RATE_LIMIT", "0")


def partial_import(
    runner: CliRunner, example: Path, store: str, standin: UvicornServer
) -> dict[str, list[str]]:
    """An import of the example where one hospital is refused: exit status 2 and hints."""
    refused = example_records()[0][0]
    inject(standin.url, "reject", name=refused, times=5)
    result = runner.invoke(app, ["import", str(example), "--api", standin.url, "--store", store])
    assert 2 == result.exit_code, result.output
    httpx.delete(f"{standin.url}/_standin/faults", timeout=10).raise_for_status()
    return hints(result.stdout)


@pytest.mark.usefixtures("unpaced")
def test_the_import_hint_for_failed_rows_works(
    runner: CliRunner, example: Path, store: str, standin: UvicornServer
) -> None:
    """ "fix them and import that file: hospital-bulk import …": run as printed, it
    creates the row that failed, and each hospital is upstream once."""
    printed = partial_import(runner, example, store, standin)

    again = runner.invoke(app, printed["import"])

    assert 0 == again.exit_code, again.output
    held = upstream_hospitals(standin.url)
    assert collections.Counter(example_records()) == copies_upstream(held)


@pytest.mark.usefixtures("unpaced")
def test_the_resume_hint_after_failed_rows_works(
    runner: CliRunner, example: Path, store: str, standin: UvicornServer
) -> None:
    """ "Or retry them in this job instead: hospital-bulk resume …": run as printed, it
    completes the job, each hospital once and all active."""
    printed = partial_import(runner, example, store, standin)

    resumed = runner.invoke(app, printed["resume"])

    assert 0 == resumed.exit_code, resumed.output
    held = upstream_hospitals(standin.url)
    assert collections.Counter(example_records()) == copies_upstream(held)
    assert all(h["active"] for h in held)


def test_the_demos_status_hint_works(
    environ: dict[str, str], tmp_path: Path, store: str, runner: CliRunner
) -> None:
    """The demo's "from the shell: hospital-bulk status ID --store …" shows the job."""
    args = ["demo", "--port", "0", "--embedded-latency", "0.01", "--store", store]
    with Cli(args, environ, tmp_path) as cli:
        assert 0 == cli.wait(timeout=60), cli.output()
        output = "\n".join(cli.lines)

    status = runner.invoke(app, hints(output)["status"])

    assert 0 == status.exit_code, status.output
    assert "completed" in status.stdout
