"""Hypothesis: the engine's invariants hold under random fault scripts.

At every terminal state: each input row has at most one hospital upstream, no
upstream batch exceeds 20, every batch whose rows are all created is activated and
none is activated with a row missing, event numbers are contiguous, and the
summary's counters equal the per-row outcomes. Once faults stop, one resume
completes the job with every row created and activated exactly once.
"""

from __future__ import annotations

import collections

import anyio
import attrs
from hypothesis import given
from hypothesis import strategies as st

from hospital_bulk import BulkProcessor, JobState, RowState
from hospital_bulk.testing import FakeDirectory, Fault

from .helpers import UNPACED, csv_bytes, records, upstream_copies

OPERATIONS = ("create", "create", "create", "list", "activate", "delete_hospital")

#: Every fault but a hold, which costs real time and is tested on its own.
FAULTS = [fault for fault in Fault if fault is not Fault.HOLD]

fault_rules = st.lists(
    st.tuples(
        st.sampled_from(FAULTS),
        st.sampled_from(OPERATIONS),
        st.integers(min_value=1, max_value=4),  # times
        st.one_of(st.none(), st.integers(min_value=0, max_value=119)),  # one row's name
    ),
    max_size=8,
)


@attrs.frozen
class Scenario:
    rows: int
    duplicates: int
    concurrency: int
    latency: float
    rules: list[tuple[Fault, str, int, int | None]]
    resumes: int


scenarios = st.builds(
    Scenario,
    rows=st.integers(min_value=1, max_value=120),
    duplicates=st.integers(min_value=0, max_value=3),
    concurrency=st.integers(min_value=1, max_value=30),
    latency=st.sampled_from([0.0, 0.0005, 0.002]),
    rules=fault_rules,
    resumes=st.integers(min_value=0, max_value=3),
)


async def check_invariants(bulk: BulkProcessor, fake: FakeDirectory, job_id: str) -> None:
    snapshot = await bulk.get(job_id)
    job, rows = snapshot.job, snapshot.rows
    assert not job.state.is_active

    wanted = collections.Counter(row.record.key() for row in rows)
    copies = upstream_copies(fake, snapshot)
    for key, count in copies.items():
        assert count <= wanted[key], f"{count} copies upstream of {key}"

    by_batch: dict[object, list[object]] = collections.defaultdict(list)
    for row in rows:
        by_batch[row.creation_batch_id].append(row)
    for batch_id in job.creation_batch_ids:
        upstream = fake.batch(batch_id)
        assert len(upstream) <= 20
        batch_rows = [row for row in rows if row.creation_batch_id == batch_id]
        all_created = all(r.state in (RowState.CREATED, RowState.ACTIVATED) for r in batch_rows)
        any_active = any(h.active for h in upstream)
        if any_active:
            # Never activated with a row missing. (Our rows may still say "created" when
            # the activation's answer was lost and the listing failed too: a resume
            # confirms it.)
            assert all_created
            assert len(upstream) == len(batch_rows)
        if all_created and job.state is not JobState.CANCELLED:
            # Activation can only be left undone by faults outlasting every retry.
            assert any_active or job.state is JobState.COMPLETED_WITH_ERRORS

    events = await bulk.store.read_events(job_id)
    assert list(range(1, len(events) + 1)) == [event.seq for event in events]
    summary = snapshot.summary()
    statuses = collections.Counter(row.status for row in summary.hospitals)
    assert summary.total_hospitals == len(rows)
    assert summary.failed_hospitals == statuses["failed"]
    assert summary.processed_hospitals == statuses["created"] + statuses["created_and_activated"]
    assert summary.batch_activated == (statuses["created_and_activated"] == len(rows))


async def play(scenario: Scenario) -> None:
    fake = FakeDirectory(latency=scenario.latency)
    rows = records(scenario.rows)
    rows += rows[: scenario.duplicates]  # identical rows test the multiset matching
    for fault, operation, times, row in scenario.rules:
        name = rows[row % len(rows)].name if row is not None and operation == "create" else None
        fake.inject(fault, operation=operation, times=times, name=name)
    settings = attrs.evolve(UNPACED, concurrency=scenario.concurrency)
    bulk = BulkProcessor(fake, settings=settings)
    job = await bulk.submit(csv_bytes(rows))

    await bulk.run(job.id)
    await check_invariants(bulk, fake, job.id)
    for _ in range(scenario.resumes):
        if not (await bulk.store.get_job(job.id)).state.is_resumable:
            break
        await bulk.run(job.id)
        await check_invariants(bulk, fake, job.id)

    fake.clear_faults()
    if (await bulk.store.get_job(job.id)).state.is_resumable:
        await bulk.run(job.id)
    snapshot = await bulk.get(job.id)
    assert JobState.COMPLETED == snapshot.job.state
    assert collections.Counter(r.key() for r in rows) == upstream_copies(fake, snapshot)
    assert all(h.active for b in snapshot.job.creation_batch_ids for h in fake.batch(b))
    await check_invariants(bulk, fake, job.id)


@given(scenario=scenarios)
def test_invariants_under_random_faults(scenario: Scenario) -> None:
    """Any fault script, any size, up to three resumes: the invariants always hold."""
    anyio.run(play, scenario)
