"""Intake: files becoming jobs — read, checked, fingerprinted, recorded as pending.

A file being read holds all its rows until it is stored, so only a few are read at
once: reading is CPU-bound, and more at once would not be faster, only bigger (40
uploads of 10,000 rows at once took 615 MB instead of 187 MB).
"""

from __future__ import annotations

import anyio

from ._events import EventDraft, EventType
from ._jobs import (
    Fingerprint,
    Job,
    JobState,
    Progress,
    RowOutcome,
    creation_batch_ids_for,
    new_job_id,
    utcnow,
)
from ._models import ValidationReport
from ._settings import ProcessorSettings
from ._store import JobStore
from .csv import CsvOptions, CsvReader, CsvRow, Source
from .csv._text import sha256_of
from .exceptions import IdempotencyKeyReusedError, InvalidCsvError, StoreError

#: Files read and stored at once.
FILES_AT_ONCE = 2


class Intake:
    """Reads files for one processor and records them as its pending jobs."""

    def __init__(self, store: JobStore, settings: ProcessorSettings, directory: str | None) -> None:
        self.store = store
        self.settings = settings
        self.directory = directory
        self._slots: anyio.CapacityLimiter | None = None  # made in the event loop

    async def validate(self, source: Source, options: CsvOptions) -> ValidationReport:
        report, _, _ = await _read(source, options)
        return report

    async def submit(
        self,
        source: Source,
        options: CsvOptions,
        *,
        file_name: str | None,
        idempotency_key: str | None,
    ) -> Job:
        """See :meth:`BulkProcessor.submit <hospital_bulk.BulkProcessor.submit>`."""
        if idempotency_key is not None:
            existing = await self.store.find_job(idempotency_key)
            if existing is not None:
                # Only hashed, not read as CSV: the earlier job is the answer, or nothing is.
                sha256 = await anyio.to_thread.run_sync(sha256_of, source)
                return _reused(existing, idempotency_key, _fingerprint(sha256, options))
        if self._slots is None:
            self._slots = anyio.CapacityLimiter(FILES_AT_ONCE)
        async with self._slots:
            report, csv_rows, sha256 = await _read(source, options, keep_rows=True)
            if not report.valid or not csv_rows:
                raise InvalidCsvError(report)
            fingerprint = _fingerprint(sha256, options)
            job, rows = self._new_job(csv_rows, file_name, idempotency_key, fingerprint)
            accepted = EventDraft(EventType.JOB_ACCEPTED, job.progress, state=job.state)
            try:
                await self.store.add_job(job, rows, accepted)
            except StoreError:
                # Two uploads with one key raced (stores keep keys unique): the first wins.
                if idempotency_key is not None:
                    existing = await self.store.find_job(idempotency_key)
                    if existing is not None:
                        return _reused(existing, idempotency_key, fingerprint)
                raise
        return await self.store.get_job(job.id)

    def _new_job(
        self,
        csv_rows: list[CsvRow],
        file_name: str | None,
        idempotency_key: str | None,
        fingerprint: Fingerprint,
    ) -> tuple[Job, list[RowOutcome]]:
        job_id = new_job_id()
        size = self.settings.batch_size
        creation_batch_ids = creation_batch_ids_for(job_id, len(csv_rows), size)
        rows = [
            RowOutcome(row.row, row.line, row.record, creation_batch_ids[index // size])
            for index, row in enumerate(csv_rows)
        ]
        now = utcnow()
        job = Job(
            id=job_id,
            state=JobState.PENDING,
            total_rows=len(rows),
            creation_batch_ids=creation_batch_ids,
            created_at=now,
            updated_at=now,
            progress=Progress(total=len(rows)),
            file_name=file_name,
            idempotency_key=idempotency_key,
            directory=self.directory,
            fingerprint=fingerprint,
        )
        return job, rows


async def _read(
    source: Source, options: CsvOptions, *, keep_rows: bool = False
) -> tuple[ValidationReport, list[CsvRow], str]:
    """The report, the valid rows if kept, and the SHA-256 of the bytes read."""

    def read() -> tuple[ValidationReport, list[CsvRow], str]:
        reader = CsvReader(source, options)
        rows: list[CsvRow] = []
        for chunk in reader:
            if keep_rows:
                rows.extend(chunk)
        return reader.report, rows, reader.sha256

    return await anyio.to_thread.run_sync(read)


def _fingerprint(sha256: str, options: CsvOptions) -> Fingerprint:
    return Fingerprint(sha256=sha256, encoding=options.encoding, delimiter=options.delimiter)


def _reused(existing: Job, key: str, fingerprint: Fingerprint) -> Job:
    """The job an idempotency key names, if this submission is the same as its own."""
    # Jobs stored by releases without fingerprints cannot be compared: they match.
    earlier = existing.fingerprint
    if earlier is not None and (differences := earlier.differences(fingerprint)):
        raise IdempotencyKeyReusedError(key, existing.id, differences)
    return existing
