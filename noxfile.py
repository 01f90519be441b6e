"""Developer sessions: ``nox`` runs tests, lint and typing; ``nox -s NAME`` one of them."""

from __future__ import annotations

import nox

nox.options.sessions = ["tests", "lint", "typing"]
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
