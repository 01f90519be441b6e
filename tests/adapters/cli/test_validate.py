"""``hospital-bulk validate FILE``: findings as a table or JSON, exit 0 or 1."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hospital_bulk_cli import app, main

BROKEN = (
    "name,address,phone\n"
    "General Hospital,1 Main Street,555-0100\n"
    ",2 Oak Avenue,555-0101\n"
    "Clinic,3 Elm Road,not a phone\n"
)


def test_a_valid_file_exits_0(runner: CliRunner, example: Path) -> None:
    """The bundled example is valid: the verdict and the counts, exit status 0."""
    result = runner.invoke(app, ["validate", str(example)])

    assert 0 == result.exit_code, result.output
    assert "valid — 30 row(s), 30 valid, 0 error(s), 0 warning(s)" in result.stdout


def test_an_invalid_file_shows_each_finding_and_exits_1(runner: CliRunner, tmp_path: Path) -> None:
    """Each error is a table row: row, line, column, code and message."""
    path = tmp_path / "broken.csv"
    path.write_text(BROKEN)

    result = runner.invoke(app, ["validate", str(path)])

    assert 1 == result.exit_code, result.output
    lines = result.stdout.splitlines()
    assert "invalid — 3 row(s), 1 valid, 2 error(s), 0 warning(s)" in lines[0]
    missing = next(line for line in lines if "missing_value" in line)
    assert ["2", "3", "name", "missing_value"] == missing.split()[:4]
    phone = next(line for line in lines if "invalid_phone" in line)
    assert ["3", "4", "phone", "invalid_phone"] == phone.split()[:4]


def test_json_gives_the_whole_report(runner: CliRunner, tmp_path: Path) -> None:
    """`--json` prints the report as one JSON object for machines, and exits as usual."""
    path = tmp_path / "broken.csv"
    path.write_text(BROKEN)

    result = runner.invoke(app, ["validate", "--json", str(path)])

    assert 1 == result.exit_code
    [line] = result.stdout.splitlines()
    report = json.loads(line)
    assert (False, 3, 1, 2) == (
        report["valid"],
        report["total_rows"],
        report["valid_rows"],
        report["error_count"],
    )
    expected = [
        {"row": 2, "line": 3, "column": "name", "code": "missing_value"},
        {"row": 3, "line": 4, "column": "phone", "code": "invalid_phone"},
    ]
    assert expected == [
        {key: error[key] for key in ("row", "line", "column", "code")} for error in report["errors"]
    ]


def test_json_of_a_valid_file(runner: CliRunner, example: Path) -> None:
    """A valid file in JSON: valid, its counts, no errors; exit status 0."""
    result = runner.invoke(app, ["validate", str(example), "--json"])

    assert 0 == result.exit_code
    report = json.loads(result.stdout)
    assert (True, 30, 30, []) == (
        report["valid"],
        report["total_rows"],
        report["valid_rows"],
        report["errors"],
    )


def test_a_missing_file_is_an_error_not_a_traceback(runner: CliRunner, tmp_path: Path) -> None:
    """A path that does not exist: one clear line on stderr, exit status 1."""
    result = runner.invoke(app, ["validate", str(tmp_path / "nope.csv")])

    assert 1 == result.exit_code
    assert f"error: no such file: {tmp_path / 'nope.csv'}" == result.stderr.strip()
    assert "Traceback" not in result.output


def test_too_many_rows_for_max_rows(runner: CliRunner, example: Path) -> None:
    """`--max-rows` (or HOSPITAL_BULK_MAX_ROWS) caps the file: a longer one is invalid."""
    by_flag = runner.invoke(app, ["validate", str(example), "--max-rows", "10", "--json"])
    by_env = runner.invoke(
        app, ["validate", str(example), "--json"], env={"HOSPITAL_BULK_MAX_ROWS": "10"}
    )

    for result in (by_flag, by_env):
        assert 1 == result.exit_code
        assert ["too_many_rows"] == [e["code"] for e in json.loads(result.stdout)["errors"]]


#: What Excel on Windows saves as "CSV": cp1252, where 0x96 is an en dash.
EXCEL_CP1252 = (
    "name,address\nClínica São José,Rua das Flores 10\nHôpital \u2013 Nord,2 rue du Nord\n"
).encode("cp1252")


def test_a_cp1252_file_is_refused_with_a_suggestion(runner: CliRunner, tmp_path: Path) -> None:
    """Read as UTF-8 it fails on row 1, line 2: the finding says to save it as UTF-8 or
    pass the encoding, and shows the line read in cp1252."""
    path = tmp_path / "excel.csv"
    path.write_bytes(EXCEL_CP1252)

    result = runner.invoke(app, ["validate", str(path), "--json"])

    assert 1 == result.exit_code
    [error] = json.loads(result.stdout)["errors"]
    assert ("encoding", 1, 2) == (error["code"], error["row"], error["line"])
    assert "Save the file as UTF-8" in error["message"]
    assert "encoding=cp1252" in error["message"]
    assert "Clínica São José" in error["message"]


def test_encoding_and_delimiter_options(runner: CliRunner, tmp_path: Path) -> None:
    """--encoding cp1252 --delimiter '|' reads the file: the report says how."""
    path = tmp_path / "excel.csv"
    path.write_bytes(EXCEL_CP1252.replace(b",", b"|"))

    result = runner.invoke(
        app, ["validate", str(path), "--encoding", "cp1252", "--delimiter", "|", "--json"]
    )

    assert 0 == result.exit_code, result.output
    report = json.loads(result.stdout)
    assert (True, 2, "cp1252", "|") == (
        report["valid"],
        report["valid_rows"],
        report["encoding"],
        report["delimiter"],
    )


def test_a_dash_reads_standard_input(runner: CliRunner) -> None:
    """`validate -` checks what comes on standard input, shown as stdin."""
    result = runner.invoke(app, ["validate", "-"], input=BROKEN.encode())

    assert 1 == result.exit_code
    assert "stdin: invalid — 3 row(s), 1 valid, 2 error(s), 0 warning(s)" in result.stdout


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (["--encoding", "klingon"], "--encoding"),
        (["--encoding", "base64"], "--encoding"),
        (["--delimiter", "ab"], "--delimiter"),
        (["--delimiter", '"'], "--delimiter"),
    ],
)
@pytest.mark.parametrize("command", ["validate", "import"])
def test_a_bad_encoding_or_delimiter_is_a_usage_error(
    command: str,
    args: list[str],
    flag: str,
    example: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A bad value exits 64, as every bad command line does (2 means a partial import),
    with a message naming the flag: no traceback, nothing read, nothing run."""
    with pytest.raises(SystemExit) as exit_info:
        main([command, str(example), *args])

    err = capsys.readouterr().err
    assert 64 == exit_info.value.code
    assert f"Invalid value for '{flag}'" in err
    assert "Traceback" not in err
