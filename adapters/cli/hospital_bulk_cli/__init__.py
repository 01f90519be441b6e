"""The command line: a thin typer adapter over :mod:`hospital_bulk`."""

from __future__ import annotations

import sys


def main() -> None:
    """Entry point of the ``hospital-bulk`` console script."""
    sys.stderr.write("hospital-bulk: the command line is not built yet\n")
    raise SystemExit(1)
