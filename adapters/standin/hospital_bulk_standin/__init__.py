"""The stand-in Hospital Directory: the upstream's semantics on a real socket, on cue faults.

A Starlette app over :class:`hospital_bulk.testing.FakeDirectory`, for demos, for
trying the service or the CLI offline, and for end-to-end tests. Serve it with
``uvicorn hospital_bulk_standin.app:app --port 9000`` (settings from
``HOSPITAL_DIRECTORY_*`` variables), or build one with :func:`create_directory_app`.
``docs/standin.md`` has the whole story.
"""

from __future__ import annotations

from ._server import (
    ADMIN_PREFIX,
    ENV_ADMIN,
    ENV_CHAOS,
    ENV_CHAOS_SEED,
    ENV_CREATE_LIMIT,
    ENV_LATENCY,
    ENV_LIMIT_MODE,
    ENV_OTHER_LIMIT,
    DirectoryApp,
    create_directory_app,
    directory_app_from_env,
    parse_rate_limit,
)

# Imported last and on purpose under the submodule's own name: ``hospital_bulk_standin:app``
# is then the app object (this import rebinds the name the submodule import just set), and
# ``hospital_bulk_standin.app:app`` still works, as uvicorn imports the module itself.
from .app import app

__all__ = [
    "ADMIN_PREFIX",
    "ENV_ADMIN",
    "ENV_CHAOS",
    "ENV_CHAOS_SEED",
    "ENV_CREATE_LIMIT",
    "ENV_LATENCY",
    "ENV_LIMIT_MODE",
    "ENV_OTHER_LIMIT",
    "DirectoryApp",
    "app",
    "create_directory_app",
    "directory_app_from_env",
    "parse_rate_limit",
]
