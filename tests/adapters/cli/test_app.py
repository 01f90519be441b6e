"""The command as a whole: help, settings shown in it, and exit statuses of bad usage."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from hospital_bulk_cli import app, main

COMMANDS = ["validate", "import", "jobs", "status", "resume", "cancel", "delete"]
COMMANDS += ["serve", "directory", "demo"]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(runner: CliRunner, command: str) -> None:
    """`COMMAND --help` describes it and exits 0."""
    result = runner.invoke(app, [command, "--help"])

    assert 0 == result.exit_code, result.output
    assert f"Usage: hospital-bulk {command}" in result.stdout


def test_help_names_the_environment_variable_of_every_setting(runner: CliRunner) -> None:
    """Each setting of `import` shows its variable and default, under a panel that says
    which wins."""
    result = runner.invoke(app, ["import", "--help"], env={"COLUMNS": "300"})

    for shown in (
        "Settings (flag > environment variable > default)",
        "[env var: HOSPITAL_API_BASE]",
        "[default: https://hospital-directory.onrender.com]",
        "[env var: HOSPITAL_BULK_STORE]",
        "[env var: HOSPITAL_BULK_RATE_LIMIT]",
        "[env var: HOSPITAL_BULK_RATE_WINDOW]",
        "[env var: HOSPITAL_BULK_CONCURRENCY]",
        "[env var: HOSPITAL_BULK_MAX_ROWS]",
        "[env var: HOSPITAL_BULK_EMBEDDED_LATENCY]",
    ):
        assert shown in result.stdout


def test_a_bad_command_line_exits_64(capsys: pytest.CaptureFixture[str]) -> None:
    """Not 2, which means a partial import: the command line itself was wrong."""
    with pytest.raises(SystemExit) as exit_info:
        main(["import", "--no-such-flag", "file.csv"])

    assert 64 == exit_info.value.code
    assert "Error: No such option: --no-such-flag" in capsys.readouterr().err


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    """`hospital-bulk --help` through the entry point."""
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])

    assert 0 == exit_info.value.code
    assert "Exit status: 0 success" in capsys.readouterr().out


def test_help_shows_the_services_own_defaults() -> None:
    """The defaults the command line declares are those ServiceSettings applies."""
    from hospital_bulk_cli.settings import DEFAULTS
    from hospital_bulk_fastapi import ServiceSettings

    fields = ServiceSettings.model_fields
    declared = {name: value for name, value in DEFAULTS.items() if name != "store"}
    assert {name: fields[name].default for name in declared} == declared
