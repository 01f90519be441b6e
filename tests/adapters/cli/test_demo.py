"""``hospital-bulk demo``: the service, the embedded directory and the bundled example."""

from __future__ import annotations

import re
import signal
import time
from pathlib import Path

import httpx

from hospital_bulk import validate_csv
from hospital_bulk_cli.demo import example_csv

from .conftest import Cli


def test_the_bundled_example_is_a_valid_file_of_two_batches() -> None:
    """Shipped inside the package (importlib.resources): 20 to 40 rows, all valid."""
    report = validate_csv(example_csv())

    assert (True, 0) == (report.valid, report.warning_count)
    assert 20 < report.total_rows <= 40


def test_demo_imports_the_example_and_finishes_by_itself(
    environ: dict[str, str], tmp_path: Path, store: str
) -> None:
    """Service up, example imported with the bar, summary, where to look next; then it
    stops by itself, exit status 0, in seconds."""
    started = time.monotonic()
    args = ["demo", "--port", "0", "--embedded-latency", "0.05", "--store", store]
    with Cli(args, environ, tmp_path) as cli:
        code = cli.wait(timeout=60)
        output = "\n".join(cli.lines)
    elapsed = time.monotonic() - started

    assert 0 == code, cli.output()
    assert elapsed < 30
    assert re.search(r"the service runs at http://127\.0\.0\.1:\d+ on the embedded", output)
    assert "30/30" in output
    assert "│ state                 │ completed" in output
    assert re.search(r"API docs +http://127\.0\.0\.1:\d+/docs", output)
    assert re.search(r"job status +http://127\.0\.0\.1:\d+/bulk/status/[0-9a-f-]{36}", output)


def test_demo_keep_serving_stays_up_until_ctrl_c(
    environ: dict[str, str], tmp_path: Path, store: str
) -> None:
    """`--keep-serving`: after the import the service answers for the job; Ctrl-C ends it."""
    args = ["demo", "--port", "0", "--embedded-latency", "0.01", "--store", store]
    with Cli([*args, "--keep-serving"], environ, tmp_path) as cli:
        status_line = cli.read_until(lambda line: "job status" in line)
        cli.read_until(lambda line: line.startswith("Serving at"))
        status_url = status_line.split()[-1]
        status = httpx.get(status_url, timeout=10)
        docs = httpx.get(status_url.split("/bulk/")[0] + "/docs", timeout=10)
        cli.process.send_signal(signal.SIGINT)

        assert 0 == cli.wait(), cli.output()
    assert (200, "completed") == (status.status_code, status.json()["state"])
    assert 200 == docs.status_code
