"""Small builders shared by the engine tests."""

from __future__ import annotations

import collections
import csv
import io
from collections.abc import Sequence

import anyio

from hospital_bulk import (
    BulkProcessor,
    CallKind,
    HospitalRecord,
    JobSnapshot,
    ProcessorSettings,
    RateGate,
    RetryPolicy,
)
from hospital_bulk.testing import FakeDirectory

#: Quick retries so fault scenarios finish in milliseconds.
FAST_RETRY = RetryPolicy(
    attempts=6, timeout=30.0, backoff_initial=0.001, backoff_max=0.01, landing_horizon=0.0
)
UNPACED = ProcessorSettings(
    concurrency=20,
    create_limit=None,
    other_limit=None,
    retry=FAST_RETRY,
    watch_poll=0.05,
    unpaced_throttle_pause=0.01,
)


def records(count: int, *, prefix: str = "Hospital") -> list[HospitalRecord]:
    return [
        HospitalRecord(f"{prefix} {n}", f"{n} Main Street", f"555-{n:04d}")
        for n in range(1, count + 1)
    ]


def csv_bytes(rows: Sequence[HospitalRecord], *, header: bool = True) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    if header:
        writer.writerow(["name", "address", "phone"])
    for record in rows:
        writer.writerow([record.name, record.address, record.phone or ""])
    return out.getvalue().encode()


def processor(fake: FakeDirectory, settings: ProcessorSettings = UNPACED) -> BulkProcessor:
    return BulkProcessor(fake, settings=settings)


def upstream_copies(fake: FakeDirectory, snapshot: JobSnapshot) -> collections.Counter[object]:
    """How many hospitals the directory holds per (name, address, phone) in the job's batches."""
    return collections.Counter(
        hospital.record().key()
        for batch_id in snapshot.job.creation_batch_ids
        for hospital in fake.batch(batch_id)
    )


async def take_when_free(gate: RateGate, kind: CallKind = CallKind.CREATE) -> None:
    """Take one of ``kind`` through ``gate``, sleeping as long as it says to first."""
    while True:
        wait = await gate.take(kind)
        if wait <= 0:
            return
        await anyio.sleep(wait)
