"""``jobs``, ``status``, ``resume``, ``cancel``, ``delete``: the jobs of a store."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
from typer.testing import CliRunner

from hospital_bulk import BulkProcessor, HttpDirectoryClient
from hospital_bulk.stores import open_store
from hospital_bulk_cli import app
from hospital_bulk_cli.demo import example_csv
from tests.servers import UvicornServer

from .conftest import FAST, upstream_hospitals


def import_embedded(runner: CliRunner, example: Path, *args: str) -> str:
    """Import the example offline; the job's id."""
    result = runner.invoke(
        app, ["import", str(example), "--json", "--directory", "embedded", *FAST, *args]
    )
    assert 0 == result.exit_code, result.output
    job_id: str = json.loads(result.stdout.splitlines()[-1])["summary"]["job_id"]
    return job_id


def job_ids(runner: CliRunner, *args: str) -> list[str]:
    result = runner.invoke(app, ["jobs", "--json", *args])
    assert 0 == result.exit_code, result.output
    return [json.loads(line)["id"] for line in result.stdout.splitlines()]


def pending_job(store: str, directory: str = "embedded") -> str:
    """A job submitted (by the library, as the service does) but not started."""

    async def submit() -> str:
        opened = await open_store(store)
        try:
            client = HttpDirectoryClient(directory) if directory != "embedded" else None
            processor = BulkProcessor(client, store=opened, directory=directory)
            return (await processor.submit(example_csv(), file_name="queued.csv")).id
        finally:
            await opened.aclose()
            if client is not None:
                await client.aclose()

    return anyio.run(submit)


def test_jobs_lists_newest_first(runner: CliRunner, example: Path, store: str) -> None:
    """Each job once, newest first, as a table or as JSON lines."""
    first = import_embedded(runner, example, "--store", store)
    second = import_embedded(runner, example, "--store", store)

    table = runner.invoke(app, ["jobs", "--store", store])

    assert [second, first] == job_ids(runner, "--store", store)
    assert 0 == table.exit_code
    listed = [
        line.split()[:3]
        for line in table.stdout.splitlines()
        if line[:8] in (first[:8], second[:8])
    ]
    assert [[second, "completed", "30/30"], [first, "completed", "30/30"]] == listed


def test_jobs_of_an_empty_store(runner: CliRunner, store: str) -> None:
    """No jobs yet: says so, exit status 0."""
    result = runner.invoke(app, ["jobs", "--store", store])

    assert 0 == result.exit_code
    assert f"No jobs in {store}." == result.stdout.strip()


def test_status_shows_the_job(runner: CliRunner, example: Path, store: str) -> None:
    """The job's facts as a table; in JSON, the job and the original service's summary."""
    job_id = import_embedded(runner, example, "--store", store)

    table = runner.invoke(app, ["status", job_id, "--store", store])
    as_json = runner.invoke(app, ["status", job_id, "--json", "--store", store])

    assert 0 == table.exit_code
    assert "30 created, 30 activated, 0 failed" in table.stdout
    data = json.loads(as_json.stdout)
    assert (job_id, "completed", "hospitals.csv") == (
        data["job"]["id"],
        data["job"]["state"],
        data["job"]["file_name"],
    )
    assert ["created_and_activated"] * 30 == [row["status"] for row in data["summary"]["hospitals"]]


def test_status_rows_lists_every_row(runner: CliRunner, example: Path, store: str) -> None:
    """`--rows`: one line per row, with its hospital id."""
    job_id = import_embedded(runner, example, "--store", store)

    result = runner.invoke(app, ["status", job_id, "--rows", "--store", store])

    assert 0 == result.exit_code
    assert 30 == result.stdout.count("created_and_activated")


def test_an_unknown_job_is_exit_1_without_a_traceback(runner: CliRunner, store: str) -> None:
    """status, resume, cancel and delete of an id the store does not know."""
    for command in (
        ["status"],
        ["resume", "--directory", "embedded"],
        ["cancel"],
        ["delete", "-y"],
    ):
        result = runner.invoke(app, [*command, "no-such-job", "--store", store])

        assert 1 == result.exit_code, command
        assert "error: no job with id 'no-such-job' in this store" in result.stderr
        assert "Traceback" not in result.output


def test_cancel_a_pending_job(runner: CliRunner, store: str) -> None:
    """A job not started yet is cancelled; cancelling it again is a conflict, exit 1."""
    job_id = pending_job(store)

    first = runner.invoke(app, ["cancel", job_id, "--store", store])
    again = runner.invoke(app, ["cancel", job_id, "--store", store])

    assert 0 == first.exit_code, first.output
    assert f"Job {job_id} is cancelled." == first.stdout.strip()
    assert 1 == again.exit_code
    assert f"error: job '{job_id}' is cancelled: cannot" in again.stderr


def test_resume_finishes_a_job_that_never_ran(runner: CliRunner, store: str) -> None:
    """A cancelled job, never started, resumed to completion: exit status 0."""
    job_id = pending_job(store)
    runner.invoke(app, ["cancel", job_id, "--store", store])

    result = runner.invoke(
        app, ["resume", job_id, "--directory", "embedded", *FAST, "--store", store]
    )

    assert 0 == result.exit_code, result.output
    assert f"Resuming job {job_id} (queued.csv): 0 of 30 hospitals created so far" in result.stdout
    status = json.loads(runner.invoke(app, ["status", job_id, "--json", "--store", store]).stdout)
    assert "completed" == status["job"]["state"]


def test_resume_of_a_completed_job_is_a_conflict(
    runner: CliRunner, example: Path, store: str
) -> None:
    """Nothing to resume: exit status 1 and the reason."""
    job_id = import_embedded(runner, example, "--store", store)

    result = runner.invoke(app, ["resume", job_id, "--directory", "embedded", "--store", store])

    assert 1 == result.exit_code
    expected = f"error: job '{job_id}' is completed: cannot run it: nothing is left to do"
    assert expected == result.stderr.strip()


def test_delete_removes_the_hospitals_upstream(
    runner: CliRunner, example: Path, store: str, standin: UvicornServer
) -> None:
    """Asked first (no deletes on "n"); with `--yes` the hospitals go, the job shows deleted."""
    imported = runner.invoke(
        app, ["import", str(example), "--json", "--api", standin.url, "--store", store]
    )
    job_id = json.loads(imported.stdout.splitlines()[-1])["summary"]["job_id"]

    declined = runner.invoke(
        app, ["delete", job_id, "--api", standin.url, "--store", store], input="n\n"
    )

    assert 1 == declined.exit_code
    assert 30 == len(upstream_hospitals(standin.url))

    deleted = runner.invoke(
        app, ["delete", job_id, "--yes", "--api", standin.url, "--store", store]
    )

    assert 0 == deleted.exit_code, deleted.output
    assert f"Deleted 2 upstream batch(es); job {job_id} is deleted." == deleted.stdout.strip()
    assert [] == upstream_hospitals(standin.url)


def test_a_bad_store_url_is_exit_1(runner: CliRunner, tmp_path: Path) -> None:
    """An unknown scheme, or a file that cannot be made: a clear error, exit status 1."""
    blocker = tmp_path / "file"
    blocker.write_text("")

    scheme = runner.invoke(app, ["jobs", "--store", "postgres://db"])
    path = runner.invoke(app, ["jobs", "--store", f"sqlite:///{blocker}/jobs.sqlite3"])

    assert (1, 1) == (scheme.exit_code, path.exit_code)
    assert "error: --store: unknown store URL 'postgres://db'" in scheme.stderr
    assert "error: the job store failed" in path.stderr


def test_store_flag_beats_environment_beats_default(
    runner: CliRunner, example: Path, tmp_path: Path
) -> None:
    """--store wins over HOSPITAL_BULK_STORE, which wins over the default file (the
    service's, under XDG_DATA_HOME)."""
    from_env, from_flag = (
        f"sqlite:///{tmp_path / 'env.sqlite3'}",
        f"sqlite:///{tmp_path / 'flag.sqlite3'}",
    )
    env = {"HOSPITAL_BULK_STORE": from_env}

    default_job = import_embedded(runner, example)
    env_job = runner.invoke(
        app, ["import", str(example), "--directory", "embedded", *FAST], env=env
    )
    flag_job = runner.invoke(
        app,
        ["import", str(example), "--directory", "embedded", *FAST, "--store", from_flag],
        env=env,
    )

    assert (0, 0) == (env_job.exit_code, flag_job.exit_code)
    assert [default_job] == job_ids(runner)
    assert 1 == len(job_ids(runner, "--store", from_env))
    assert 1 == len(job_ids(runner, "--store", from_flag))
    assert (tmp_path / "data" / "hospital-bulk" / "jobs.sqlite3").exists()


def test_the_api_base_variable_can_name_the_embedded_directory(
    runner: CliRunner, example: Path, store: str
) -> None:
    """HOSPITAL_API_BASE=embedded is `--directory embedded`; a flag still wins over it."""
    env = {"HOSPITAL_API_BASE": "embedded", "HOSPITAL_BULK_EMBEDDED_LATENCY": "0.01"}

    by_env = runner.invoke(app, ["import", str(example), "--store", store], env=env)
    by_flag = runner.invoke(
        app, ["import", str(example), "--store", store, "--api", "not a url"], env=env
    )

    assert 0 == by_env.exit_code, by_env.output
    assert "→ the embedded directory (0.01 s per create)" in by_env.stdout
    assert 1 == by_flag.exit_code
    assert "error: --api: " in by_flag.stderr


def test_resume_without_api_goes_to_the_jobs_own_directory(
    runner: CliRunner, store: str, standin: UvicornServer
) -> None:
    """A job created against a directory is resumed there without `--api`: the rows
    land in that directory, not in the default one."""
    job_id = pending_job(store, standin.url)

    result = runner.invoke(app, ["resume", job_id, "--store", store, "--json"])

    assert 0 == result.exit_code, result.output
    assert "completed" == json.loads(result.stdout.splitlines()[-1])["summary"]["state"]
    assert 30 == len(upstream_hospitals(standin.url))


def test_another_api_for_an_existing_job_is_refused(
    runner: CliRunner, store: str, standin: UvicornServer
) -> None:
    """`--api` naming another directory than the job's: exit status 1, nothing sent,
    and the message names both."""
    job_id = pending_job(store, standin.url)

    result = runner.invoke(app, ["resume", job_id, "--store", store, "--api", "http://other.test"])

    assert 1 == result.exit_code
    assert (
        f"error: job '{job_id}' belongs to the directory {standin.url}: it cannot be run or"
        " deleted against http://other.test"
    ) == " ".join(result.stderr.split())
    assert [] == upstream_hospitals(standin.url)
    status = json.loads(runner.invoke(app, ["status", job_id, "--json", "--store", store]).stdout)
    assert ("pending", standin.url) == (status["job"]["state"], status["job"]["directory"])


def test_delete_without_api_deletes_in_the_jobs_own_directory(
    runner: CliRunner, example: Path, store: str, standin: UvicornServer
) -> None:
    imported = runner.invoke(
        app, ["import", str(example), "--json", "--api", standin.url, "--store", store]
    )
    job_id = json.loads(imported.stdout.splitlines()[-1])["summary"]["job_id"]

    deleted = runner.invoke(app, ["delete", job_id, "--yes", "--store", store])

    assert 0 == deleted.exit_code, deleted.output
    assert [] == upstream_hospitals(standin.url)
