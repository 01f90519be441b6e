"""A job's rows as CSV files: every row with its outcome, and the rows to import again.

Both adapters hand out these files (the service as ``results.csv``, the command line
as ``FILE.failed.csv``), so they are written here, once.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable

from ._jobs import RowOutcome

#: The re-import file: the three columns an upload reads, then why each row is there
#: (extra columns are only a warning on upload).
REIMPORT_COLUMNS = ("name", "address", "phone", "row", "error_code", "error")
RESULT_COLUMNS = (
    "row",
    "line",
    "name",
    "address",
    "phone",
    "status",
    "state",
    "hospital_id",
    "creation_batch_id",
    "error_code",
    "error",
)


def reimport_csv(rows: Iterable[RowOutcome]) -> str:
    """An importable file of ``rows`` (pick them with
    :func:`~hospital_bulk.reimportable_rows`)."""
    return _csv(
        REIMPORT_COLUMNS,
        (
            (r.record.name, r.record.address, r.record.phone, r.row, r.error_code, r.error)
            for r in rows
        ),
    )


def results_csv(rows: Iterable[RowOutcome]) -> str:
    """Every row of ``rows`` with everything known about its outcome."""
    return _csv(
        RESULT_COLUMNS,
        (
            (
                r.row,
                r.line,
                r.record.name,
                r.record.address,
                r.record.phone,
                r.status,
                r.state,
                r.hospital_id,
                r.creation_batch_id,
                r.error_code,
                r.error,
            )
            for r in rows
        ),
    )


def _csv(header: Iterable[str], records: Iterable[Iterable[object]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(header)
    # None is written as an empty cell by the csv module.
    writer.writerows(records)
    return out.getvalue()
