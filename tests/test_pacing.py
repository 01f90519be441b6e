"""Pacing (``hospital_bulk._pacing``): never more than N takes in any span of a window
(plus the margin), whatever the phase of the upstream's limiter; a 429 pauses everyone.

The gate's rules are checked on a clock the test moves; the processor's, against a fake
directory whose limiter slides, so that any burst our pacing allowed across the edge
of a window of its own would be answered 429.
"""

from __future__ import annotations

import pathlib

import anyio
import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hospital_bulk import BulkProcessor, CallKind, JobState, LocalRateGate, RateLimit
from hospital_bulk._pacing import window_margin
from hospital_bulk.stores.sqlite import SqliteStore
from hospital_bulk.testing import FakeDirectory

from .helpers import UNPACED, csv_bytes, records

pytestmark = pytest.mark.anyio


class Clock:
    """A clock that moves only when told."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def gate_at(clock: Clock, limit: RateLimit, unpaced_pause: float = 0.25) -> LocalRateGate:
    return LocalRateGate(
        create_limit=limit, other_limit=None, unpaced_pause=unpaced_pause, clock=clock
    )


async def test_the_next_take_waits_for_the_nth_previous_to_leave_the_span() -> None:
    """Three per 10 s: takes at 0, 4 and 5 go; one at 6 waits until the take at 0 is a
    window (plus the margin) old, and then only one goes: the take at 4 still counts."""
    clock, limit = Clock(), RateLimit(3, 10.0)
    span = limit.window + window_margin(limit.window)
    gate, start = gate_at(clock, limit), clock.now
    takes = []
    for offset in (0.0, 4.0, 5.0):
        clock.now = start + offset
        takes.append(await gate.take(CallKind.CREATE))

    clock.now = start + 6.0
    early = await gate.take(CallKind.CREATE)
    clock.now = start + span
    freed = [await gate.take(CallKind.CREATE), await gate.take(CallKind.CREATE)]

    assert [0.0, 0.0, 0.0] == takes
    assert pytest.approx(span - 6.0) == early
    assert [0.0, pytest.approx(4.0)] == freed


@given(
    count=st.integers(min_value=1, max_value=6),
    gaps=st.lists(st.floats(min_value=0.0, max_value=3.0), min_size=1, max_size=60),
)
async def test_no_span_of_a_window_ever_holds_more_than_n_takes(
    count: int, gaps: list[float]
) -> None:
    """Whenever callers ask, the takes granted never put N + 1 in a span shorter than
    the window plus the margin; and a caller told to wait gets its take once it has."""
    clock, limit = Clock(), RateLimit(count, 2.0)
    gate, granted = gate_at(clock, limit), []
    for gap in gaps:
        clock.now += gap
        wait = await gate.take(CallKind.CREATE)
        if wait > 0:
            clock.now += wait
            assert 0.0 == await gate.take(CallKind.CREATE)
        granted.append(clock.now)

    span = limit.window + window_margin(limit.window)
    shortest = min(
        (later - earlier for earlier, later in zip(granted, granted[count:], strict=False)),
        default=span,
    )
    assert shortest >= span - 1e-9


async def test_a_429_pauses_every_kind_for_retry_after_or_a_window() -> None:
    """Retry-After when the 429 has one; else a whole window of the limit it broke (its
    phase is unknown), or ``unpaced_pause`` when that kind is unpaced. Every kind waits."""
    clock, limit = Clock(), RateLimit(5, 60.0)
    gate = gate_at(clock, limit, unpaced_pause=0.25)

    with_header = await gate.throttled(CallKind.CREATE, 5.0)
    other_waits = await gate.take(CallKind.OTHER)
    clock.now += 10.0
    without_header = await gate.throttled(CallKind.CREATE, None)
    unpaced = await gate.throttled(CallKind.OTHER, None)
    paused = await gate.paused_for()
    clock.now += 60.0

    assert (5.0, 5.0) == (with_header, other_waits)
    assert (60.0, 0.25, 60.0) == (without_header, unpaced, paused)
    assert 0.0 == await gate.take(CallKind.CREATE)


@pytest.fixture(name="store_kind", params=["memory", "sqlite"])
def fixture_store_kind(request: pytest.FixtureRequest) -> str:
    kind: str = request.param
    return kind


async def test_a_sliding_limiter_never_answers_429(store_kind: str, tmp_path: pathlib.Path) -> None:
    """A directory allowing 5 creates in any 2 s (a sliding log, stricter than any phase
    of a fixed window): a 1-row job, then half a window later a 9-row job. Pacing that
    opened a window of its own at the first create would send 4 more at once and 5 as
    soon as its window closed: 9 within two seconds. Paced by the sliding rule, the
    directory never answers 429, on the memory store's gate or the SQLite store's."""
    limit = RateLimit(5, 2.0)
    fake = FakeDirectory(latency=0.01, create_limit=limit, limit_mode="sliding")
    settings = attrs.evolve(UNPACED, create_limit=limit, concurrency=5)
    store = None
    if store_kind == "sqlite":
        store = await SqliteStore.open(f"sqlite:///{tmp_path / 'jobs.sqlite3'}")
    bulk = BulkProcessor(fake, store, settings=settings)
    try:
        first = await bulk.submit(csv_bytes(records(1, prefix="First")))
        second = await bulk.submit(csv_bytes(records(9, prefix="Second")))
        with anyio.fail_after(30):
            states = [(await bulk.run(first.id)).state]
            await anyio.sleep(limit.window / 2)
            states.append((await bulk.run(second.id)).state)
    finally:
        await bulk.aclose()
        if store is not None:
            await store.aclose()

    assert [JobState.COMPLETED, JobState.COMPLETED] == states
    assert 0 == fake.stats.throttled
    assert 10 == len(fake.hospitals)
