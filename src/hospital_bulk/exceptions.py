"""Every error the library raises derives from :class:`HospitalBulkError`.

::

    HospitalBulkError
    ├── DirectoryError                 a call to the upstream directory failed
    │   ├── RejectedError              4xx (not 408/429): permanent, with the upstream's reason
    │   ├── ThrottledError             429: nothing stored; ``retry_after`` if sent
    │   ├── NotSentError               nothing reached the upstream (connect error, pool timeout)
    │   ├── MaybeLandedError           the request may have been applied (timeout after sending,
    │   │   │                          5xx, broken response)
    │   │   └── UnreadableAnswerError  a 2xx whose body we cannot read: asking again will
    │   │                              not make it readable
    │   └── DirectoryUnavailableError  the directory did not answer for ``outage_deadline``
    │                                  seconds: nothing was sent meanwhile
    ├── JobNotFoundError               no job with that id
    ├── JobConflictError               the job's state does not allow the operation (e.g. running)
    │   └── DirectoryMismatchError     the job belongs to another directory than the processor's
    ├── IdempotencyKeyReusedError      an idempotency key came again with another file or options
    ├── InvalidCsvError                a file failed validation; carries the report
    └── StoreError                     the job store failed

Retry safety follows the classes: ``ThrottledError`` and ``NotSentError`` may be
retried blindly; after ``MaybeLandedError`` a create must be reconciled first.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ._models import ValidationReport


class HospitalBulkError(Exception):
    """Base class of every error raised by ``hospital_bulk``."""


class DirectoryError(HospitalBulkError):
    """A call to the upstream Hospital Directory failed."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class RejectedError(DirectoryError):
    """The upstream refused the request for good (4xx other than 408 and 429)."""


class ThrottledError(DirectoryError):
    """The upstream answered 429; nothing was stored."""

    def __init__(
        self, message: str, *, status: int | None = 429, retry_after: float | None = None
    ) -> None:
        super().__init__(message, status=status)
        self.retry_after = retry_after


class NotSentError(DirectoryError):
    """The request never reached the upstream: safe to send again."""


class MaybeLandedError(DirectoryError):
    """The request may have been applied upstream; only a look tells."""


class UnreadableAnswerError(MaybeLandedError):
    """The directory answered 2xx with a body we cannot read: it acted, but how is
    unknown. Never retried, not even for a listing: the same question gets the same
    answer."""


class DirectoryUnavailableError(DirectoryError):
    """The directory stayed unavailable past ``RetryPolicy.outage_deadline``: the call
    was not sent. Its job stops, resumable, rather than failing rows."""


class JobNotFoundError(HospitalBulkError):
    """No job has this id."""

    def __init__(self, job_id: str) -> None:
        super().__init__(f"no job with id {job_id!r}")
        self.job_id = job_id


class JobConflictError(HospitalBulkError):
    """The job's current state does not allow the requested operation."""

    def __init__(self, job_id: str, state: str, operation: str) -> None:
        super().__init__(f"job {job_id!r} is {state}: cannot {operation}")
        self.job_id = job_id
        self.state = state
        self.operation = operation


class DirectoryMismatchError(JobConflictError):
    """The job was created against another directory: its rows live there, so it can
    only be run or deleted against that one."""

    def __init__(self, job_id: str, state: str, job_directory: str, directory: str) -> None:
        HospitalBulkError.__init__(
            self,
            f"job {job_id!r} belongs to the directory {job_directory}: it cannot be run or"
            f" deleted against {directory}",
        )
        self.job_id = job_id
        self.state = state
        self.operation = f"work on it against {directory}"
        self.job_directory = job_directory
        self.directory = directory


class IdempotencyKeyReusedError(HospitalBulkError):
    """An idempotency key already names a job submitted from another file, or with other
    reading options: ``key``, that ``job_id``, and ``differences`` in words."""

    def __init__(self, key: str, job_id: str, differences: Sequence[str]) -> None:
        what = ", ".join(differences) or "a different submission"
        super().__init__(
            f"the idempotency key {key!r} was used for job {job_id!r}, and now comes with"
            f" {what}: send the same file with the same options to get that job, or use"
            " a new key for a new job"
        )
        self.key = key
        self.job_id = job_id
        self.differences = tuple(differences)


class InvalidCsvError(HospitalBulkError):
    """A CSV file failed validation; ``report`` holds the findings."""

    def __init__(self, report: ValidationReport) -> None:
        super().__init__(f"the file has {report.error_count} error(s)")
        self.report = report


class StoreError(HospitalBulkError):
    """The job store failed."""
