"""The command line: a thin typer adapter over :mod:`hospital_bulk`.

``hospital-bulk --help`` lists the commands; ``docs/cli.md`` describes them.
"""

from __future__ import annotations

from .app import app, main

__all__ = ["app", "main"]
