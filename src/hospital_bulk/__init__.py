"""Load hospital CSV files into a Hospital Directory API exactly once.

Validate a file, create every hospital under a batch id, activate the batch, and
account for every row — paced to the upstream's limits, resumable after any
failure, observable as a stream of events.
"""

from __future__ import annotations

from ._client import DEFAULT_BASE_URL, DirectoryClient, DirectoryTimeouts, HttpDirectoryClient
from ._events import Event, EventDraft, EventType
from ._exports import reimport_csv, results_csv
from ._jobs import Fingerprint, Job, JobState, Progress, RowOutcome, RowState, RowStatus
from ._models import (
    UPSTREAM_LIMITS,
    Finding,
    FindingCode,
    Hospital,
    HospitalRecord,
    RateLimit,
    Severity,
    UpstreamLimits,
    ValidationReport,
)
from ._pacing import CallKind, LocalRateGate, RateGate
from ._processor import BulkProcessor
from ._run import Run
from ._settings import ProcessorSettings, RetryPolicy
from ._store import JobStore
from ._summary import JobSnapshot, JobSummary, RowSummary, reimportable_rows
from .csv import CsvOptions, CsvReader, CsvRow, read_csv, validate_csv
from .exceptions import (
    DirectoryError,
    DirectoryMismatchError,
    DirectoryUnavailableError,
    HospitalBulkError,
    IdempotencyKeyReusedError,
    InvalidCsvError,
    JobConflictError,
    JobNotFoundError,
    MaybeLandedError,
    NotSentError,
    RejectedError,
    StoreError,
    ThrottledError,
    UnreadableAnswerError,
)
from .stores.memory import MemoryStore

__all__ = [
    "DEFAULT_BASE_URL",
    "UPSTREAM_LIMITS",
    "BulkProcessor",
    "CallKind",
    "CsvOptions",
    "CsvReader",
    "CsvRow",
    "DirectoryClient",
    "DirectoryError",
    "DirectoryMismatchError",
    "DirectoryTimeouts",
    "DirectoryUnavailableError",
    "Event",
    "EventDraft",
    "EventType",
    "Finding",
    "FindingCode",
    "Fingerprint",
    "Hospital",
    "HospitalBulkError",
    "HospitalRecord",
    "HttpDirectoryClient",
    "IdempotencyKeyReusedError",
    "InvalidCsvError",
    "Job",
    "JobConflictError",
    "JobNotFoundError",
    "JobSnapshot",
    "JobState",
    "JobStore",
    "JobSummary",
    "LocalRateGate",
    "MaybeLandedError",
    "MemoryStore",
    "NotSentError",
    "ProcessorSettings",
    "Progress",
    "RateGate",
    "RateLimit",
    "RejectedError",
    "RetryPolicy",
    "RowOutcome",
    "RowState",
    "RowStatus",
    "RowSummary",
    "Run",
    "Severity",
    "StoreError",
    "ThrottledError",
    "UnreadableAnswerError",
    "UpstreamLimits",
    "ValidationReport",
    "read_csv",
    "reimport_csv",
    "reimportable_rows",
    "results_csv",
    "validate_csv",
]
