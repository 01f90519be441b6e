"""Value objects shared by the CSV reader, the directory client and the engine.

All of them are frozen attrs classes: they are passed between tasks and stored,
so nothing may change them in place.
"""

from __future__ import annotations

import datetime as dt
import enum
from uuid import UUID

import attrs


@attrs.frozen
class HospitalRecord:
    """One hospital as read from a CSV row: what we ask the directory to create."""

    name: str
    address: str
    phone: str | None = None

    def key(self) -> tuple[str, str, str | None]:
        """The identity used to match our rows with hospitals found upstream."""
        return (self.name, self.address, self.phone)


@attrs.frozen
class Hospital:
    """A hospital as the upstream directory holds it.

    Only ``id`` is guaranteed by every upstream answer we accept; the client fills
    the other fields from the request when a create answers with ``id`` alone.
    """

    id: int
    name: str
    address: str
    phone: str | None = None
    creation_batch_id: UUID | None = None
    active: bool = False
    created_at: dt.datetime | None = None

    def record(self) -> HospitalRecord:
        return HospitalRecord(name=self.name, address=self.address, phone=self.phone)


class Severity(enum.StrEnum):
    ERROR = "error"
    WARNING = "warning"


class FindingCode(enum.StrEnum):
    """What a validation finding is about. The values are part of the public contract."""

    MISSING_VALUE = "missing_value"
    TOO_MANY_COLUMNS = "too_many_columns"
    TOO_FEW_COLUMNS = "too_few_columns"
    FIELD_TOO_LONG = "field_too_long"
    CONTROL_CHARACTER = "control_character"
    INVALID_PHONE = "invalid_phone"
    TOO_MANY_ROWS = "too_many_rows"
    EMPTY_FILE = "empty_file"
    NO_DATA_ROWS = "no_data_rows"
    ENCODING = "encoding"
    MISSING_COLUMN = "missing_column"
    DUPLICATE_COLUMN = "duplicate_column"
    UNKNOWN_COLUMN = "unknown_column"
    DUPLICATE_ROW = "duplicate_row"
    MALFORMED_CSV = "malformed_csv"


@attrs.frozen
class Finding:
    """One problem found in a CSV file.

    ``row`` is the 1-based data row (header excluded), ``line`` the 1-based physical
    line where the row starts; either is ``None`` when the finding is about the whole
    file (for example an empty file) or, for ``line``, about a byte offset.
    """

    code: FindingCode
    message: str
    row: int | None = None
    line: int | None = None
    column: str | None = None
    value: str | None = None
    severity: Severity = Severity.ERROR


@attrs.frozen
class ValidationReport:
    """The outcome of reading a CSV file: counts plus the findings.

    At most ``max_findings`` errors (and as many warnings) are kept in full; the
    counts always cover every finding.
    """

    total_rows: int
    valid_rows: int
    errors: tuple[Finding, ...] = ()
    warnings: tuple[Finding, ...] = ()
    error_count: int = 0
    warning_count: int = 0
    has_header: bool = False
    delimiter: str = ","
    encoding: str = "utf-8"

    @property
    def valid(self) -> bool:
        return self.error_count == 0


@attrs.frozen
class RateLimit:
    """At most ``count`` requests per ``window`` seconds ("30 per 1 minute").

    The upstream counts them in fixed windows, each opened by the first request after
    the previous one closed; pacing keeps to the limit in any span of ``window``
    seconds, which is safe whenever its window opened.
    """

    count: int
    window: float = 60.0


@attrs.frozen
class UpstreamLimits:
    """What the Hospital Directory publishes about itself (UPSTREAM.md)."""

    #: ``POST /hospitals/``, per client address.
    create: RateLimit = RateLimit(30, 60.0)
    #: Every other endpoint but ``GET /``, per client address.
    other: RateLimit = RateLimit(50, 60.0)
    #: ``GET /``.
    ping: RateLimit = RateLimit(100, 60.0)
    #: Hospitals per ``creation_batch_id``.
    batch_cap: int = 20


#: The one place the real directory's limits are written down: the engine's defaults,
#: the embedded directory and the stand-in all read them from here.
UPSTREAM_LIMITS = UpstreamLimits()
