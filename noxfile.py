"""Developer sessions: ``nox`` runs tests, lowest, lint and typing; ``nox -s NAME`` one of them."""

from __future__ import annotations

import nox
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

nox.options.sessions = ["tests", "lowest", "lint", "typing"]
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_missing_interpreters = True

PYPROJECT = nox.project.load_toml("pyproject.toml")
PYTHON = "3.11"


def install_group(session: nox.Session, group: str) -> None:
    session.install(*nox.project.dependency_groups(PYPROJECT, group))


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """The whole test suite. ``HYPOTHESIS_PROFILE=thorough`` for many more examples."""
    session.install("-e", ".[all]")
    install_group(session, "test")
    session.run("pytest", *session.posargs)


@nox.session(python=PYTHON, reuse_venv=False)
def lowest(session: nox.Session) -> None:
    """The whole test suite on the floors: each dependency pyproject.toml names (every
    extra's too) at the lowest version it allows, their own dependencies at the newest
    that fit, and the test group's tools at the newest that fit those. A fresh
    environment every time: a reused one would keep newer versions installed.
    """
    session.install("uv")
    session.run("uv", "pip", "install", "--resolution", "lowest-direct", "-e", ".[all]")
    output = session.run("uv", "pip", "freeze", "--exclude-editable", silent=True)
    assert isinstance(output, str)  # uv's own notes on stderr are in it too
    installed = [line for line in output.splitlines() if "==" in line]
    pins = dict(line.split("==", 1) for line in installed)
    pins = {canonicalize_name(name): version for name, version in pins.items()}
    floors = declared_floors()
    wrong = {
        name: pins.get(name)
        for name, floor in floors.items()
        if name not in pins or Version(pins[name]) != Version(floor)
    }
    if wrong:
        session.error(f"not installed at their floors: {wrong} (floors: {floors})")
    session.log("floors: " + ", ".join(f"{name}=={v}" for name, v in sorted(floors.items())))
    # The test tools may be newest, but must not move any runtime version.
    constraints = f"{session.create_tmp()}/lowest-constraints.txt"
    with open(constraints, "w") as file:
        file.write("\n".join(installed) + "\n")
    session.run(
        "uv", "pip", "install", "-c", constraints, *nox.project.dependency_groups(PYPROJECT, "test")
    )
    session.run("pytest", *session.posargs)


def declared_floors() -> dict[str, str]:
    """Each third-party dependency of the project and its extras: its ``>=`` version."""
    project = PYPROJECT["project"]
    declared = [*project["dependencies"]]
    for extra in project["optional-dependencies"].values():
        declared.extend(extra)
    floors: dict[str, str] = {}
    for text in declared:
        requirement = Requirement(text)
        name = canonicalize_name(requirement.name)
        if name == canonicalize_name(project["name"]):
            continue
        lower = [spec.version for spec in requirement.specifier if spec.operator == ">="]
        if len(lower) != 1:
            raise ValueError(f"{text!r}: every dependency needs one >= floor")
        floors[name] = lower[0]
    return floors


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    install_group(session, "lint")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python=PYTHON)
def typing(session: nox.Session) -> None:
    session.install("-e", ".[all]")
    install_group(session, "typing")
    install_group(session, "test")
    session.run("mypy")


@nox.session(python=PYTHON)
def schemathesis(session: nox.Session) -> None:
    """Fuzz the HTTP service from its own OpenAPI document: no 5xx, no undocumented status,
    every answer matching its documented schema. The service runs in uvicorn on loopback,
    embedded (a fake directory, a memory store). ``nox -s schemathesis -- --max-examples 500``.
    """
    import os
    import socket
    import subprocess
    import time

    session.install("-e", ".[fastapi]", "schemathesis>=4.0")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {
        "HOSPITAL_API_BASE": "embedded",
        "HOSPITAL_BULK_EMBEDDED_LATENCY": "0.001",
        "HOSPITAL_BULK_STORE": "memory://",
        "HOSPITAL_BULK_RATE_LIMIT": "0",
        "HOSPITAL_BULK_SYNC_TIMEOUT": "5",
    }
    python = str(session.bin) + "/python"
    server = subprocess.Popen(
        [python, "-m", "uvicorn", "hospital_bulk_fastapi.main:app", "--port", str(port)],
        env={**os.environ, **env},
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    session.error("the service did not start")
                time.sleep(0.1)
        session.run(
            "schemathesis",
            "run",
            f"http://127.0.0.1:{port}/openapi.json",
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,"
            "response_schema_conformance,response_headers_conformance",
            "--max-examples",
            "100",
            *session.posargs,
        )
    finally:
        server.terminate()
        server.wait(10)
