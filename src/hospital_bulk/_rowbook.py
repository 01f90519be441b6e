"""A job's rows as one run holds them: by number and by batch, counted as they
change, and each change saved with its event before the run relies on it."""

from __future__ import annotations

import collections
import time
from collections.abc import Sequence
from uuid import UUID

import attrs

from ._events import EventDraft, EventType
from ._jobs import Job, Progress, RowOutcome, RowState
from ._store import JobStore
from .exceptions import DirectoryError


class _Tally:
    """Row counters kept incrementally: recounting every row per event would be O(n²)."""

    def __init__(self, rows: Sequence[RowOutcome]) -> None:
        progress = Progress.count(rows)
        self.counts = collections.Counter(row.state for row in rows)
        self.total = progress.total
        self.created_this_run = 0
        self.started = time.monotonic()

    def move(self, old: RowState, new: RowState) -> None:
        self.counts[old] -= 1
        self.counts[new] += 1
        if new is RowState.CREATED and old is not RowState.ACTIVATED:
            self.created_this_run += 1

    def progress(self) -> Progress:
        counts = self.counts
        elapsed = time.monotonic() - self.started
        rate = self.created_this_run / elapsed if elapsed > 0 else 0.0
        return Progress(
            total=self.total,
            created=counts[RowState.CREATED] + counts[RowState.ACTIVATED],
            activated=counts[RowState.ACTIVATED],
            failed=counts[RowState.FAILED],
            unknown=counts[RowState.UNKNOWN],
            rate=round(rate, 3),
        )


class RowBook:
    """The rows of one run of a job, and how their changes are saved."""

    def __init__(self, job: Job, rows: Sequence[RowOutcome], store: JobStore) -> None:
        self.job = job
        self.store = store
        self.rows = {row.row: row for row in rows}
        self._batches: dict[UUID, list[int]] = collections.defaultdict(list)
        for row in rows:
            self._batches[row.creation_batch_id].append(row.row)
        self.tally = _Tally(rows)

    def batch_rows(self, creation_batch_id: UUID) -> list[RowOutcome]:
        return [self.rows[number] for number in self._batches[creation_batch_id]]

    async def _set(
        self,
        number: int,
        state: RowState,
        event: EventType | None,
        code: str | None,
        error: DirectoryError | None,
        **changes: object,
    ) -> None:
        row = attrs.evolve(
            self.rows[number],
            state=state,
            error_code=code,
            error=error.message if error is not None else None,
            **changes,  # type: ignore[arg-type]
        )
        await self._update(row, event)

    async def _update(self, row: RowOutcome, event: EventType | None = None) -> None:
        old = self.rows[row.row]
        self.rows[row.row] = row
        self.tally.move(old.state, row.state)
        drafts = []
        if event is not None:
            drafts.append(
                EventDraft(
                    type=event,
                    progress=self.tally.progress(),
                    row=row.row,
                    hospital_id=row.hospital_id,
                    creation_batch_id=row.creation_batch_id,
                    error_code=row.error_code,
                    error=row.error,
                )
            )
        await self.store.save(self.job.id, [row], drafts)

    async def _update_many(
        self, rows: Sequence[RowOutcome], *, creation_batch_id: UUID, count: int | None
    ) -> None:
        for row in rows:
            self.tally.move(self.rows[row.row].state, row.state)
            self.rows[row.row] = row
        draft = EventDraft(
            type=EventType.BATCH_ACTIVATED,
            progress=self.tally.progress(),
            creation_batch_id=creation_batch_id,
            count=count,
        )
        await self.store.save(self.job.id, rows, [draft])
