"""FakeDirectory's chaos mode: seeded random faults and outages, counted in the stats.

The stand-in's face of it (the environment variables, ``/_standin/chaos``) is in
tests/adapters/test_directory_standin.py; the long run against the service is
benchmarks/chaos.py.
"""

# The house style is `assert expected == actual`, which ruff's SIM300 calls yoda.

from __future__ import annotations

from collections import Counter
from uuid import UUID, uuid4

import pytest

from hospital_bulk import (
    HospitalRecord,
    MaybeLandedError,
    NotSentError,
    RejectedError,
    ThrottledError,
)
from hospital_bulk.exceptions import DirectoryError
from hospital_bulk.testing import CHAOS_OPERATIONS, Chaos, FakeDirectory, Fault

pytestmark = pytest.mark.anyio

RECORD = HospitalRecord("General Hospital", "1 Main Street", "555-0100")
ALL_FAULTS = {
    Fault.THROTTLE: 0.1,
    Fault.FAIL_BEFORE_STORING: 0.1,
    Fault.ERROR_AFTER_STORING: 0.1,
    Fault.FAIL_AFTER_STORING: 0.1,
    Fault.NOT_SENT: 0.1,
}


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(name="batch_id")
def fixture_batch_id() -> UUID:
    return uuid4()


async def outcome(fake: FakeDirectory, batch_id: UUID) -> str:
    """What one create met: ``ok`` or the error's class name. Each batch takes 20
    hospitals: so that the cap never answers, every call after the first 10 of a
    batch goes to a batch of its own."""
    if len(fake.batch(batch_id)) >= 10:
        batch_id = uuid4()
    try:
        await fake.create_hospital(RECORD, batch_id)
    except DirectoryError as exc:
        return type(exc).__name__
    return "ok"


async def test_no_chances_no_faults(batch_id: UUID) -> None:
    """A chaos mode whose chances are all 0 changes nothing."""
    fake = FakeDirectory()
    fake.start_chaos(Chaos(dict.fromkeys(ALL_FAULTS, 0.0), {3.0: 0.0}, seed=1))

    outcomes = [await outcome(fake, batch_id) for _ in range(50)]

    assert ["ok"] * 50 == outcomes
    assert (50, 0, Counter()) == (len(fake.hospitals), fake.stats.faults, fake.stats.chaos)


@pytest.mark.parametrize(
    ("fault", "error", "stored"),
    [
        (Fault.THROTTLE, ThrottledError, 0),
        (Fault.FAIL_BEFORE_STORING, MaybeLandedError, 0),
        (Fault.ERROR_AFTER_STORING, MaybeLandedError, 5),
        (Fault.FAIL_AFTER_STORING, MaybeLandedError, 5),
        (Fault.NOT_SENT, NotSentError, 0),
        (Fault.REJECT, RejectedError, 0),
    ],
)
async def test_a_chance_of_1_hits_every_call(
    fault: Fault, error: type[DirectoryError], stored: int, batch_id: UUID
) -> None:
    """Chance 1: every call suffers the fault, stores as the fault says, and is counted."""
    fake = FakeDirectory()
    fake.start_chaos(Chaos({fault: 1.0}))

    outcomes = [await outcome(fake, batch_id) for _ in range(5)]

    assert [error.__name__] * 5 == outcomes
    assert stored == len(fake.hospitals)
    assert (Counter({fault.value: 5}), 5) == (fake.stats.chaos, fake.stats.faults)


async def test_holds_apply_to_creates_and_are_counted_by_length(batch_id: UUID) -> None:
    """A hold delays a create by its seconds; another call drawing a hold is served."""
    fake = FakeDirectory()
    fake.start_chaos(Chaos(holds={0.01: 1.0}))

    await fake.create_hospital(RECORD, batch_id)
    listed = await fake.list_batch(batch_id)

    assert 1 == len(listed)
    assert Counter({"hold:0.01": 1}) == fake.stats.chaos


async def test_the_same_seed_draws_the_same_faults(batch_id: UUID) -> None:
    """Seeded: the same calls meet the same faults; another seed, others."""

    async def run(seed: int) -> list[str]:
        fake = FakeDirectory()
        fake.start_chaos(Chaos(ALL_FAULTS, seed=seed))
        return [await outcome(fake, batch_id) for _ in range(200)]

    first, again, other = await run(7), await run(7), await run(8)

    assert first == again
    assert first != other


async def test_chances_are_kept_and_counted(batch_id: UUID) -> None:
    """Over many calls each fault hits about its chance; stats.chaos counts each kind."""
    fake = FakeDirectory()
    fake.start_chaos(Chaos(ALL_FAULTS, seed=3))

    outcomes = Counter([await outcome(fake, batch_id) for _ in range(2000)])

    chaos = fake.stats.chaos
    assert set(chaos) == {fault.value for fault in ALL_FAULTS}
    assert all(140 <= count <= 260 for count in chaos.values()), chaos
    assert sum(chaos.values()) == fake.stats.faults
    assert chaos["throttle"] == fake.stats.throttled == outcomes["ThrottledError"]
    assert chaos["not_sent"] == outcomes["NotSentError"]
    assert 2000 - sum(chaos.values()) == outcomes["ok"]
    stored = 2000 - sum(chaos[k] for k in ("throttle", "fail_before_storing", "not_sent"))
    assert stored == len(fake.hospitals)


async def test_an_injected_rule_wins_over_the_draw(batch_id: UUID) -> None:
    """A rule due for the call applies; the draw is for calls without one."""
    fake = FakeDirectory()
    fake.start_chaos(Chaos({Fault.THROTTLE: 1.0}))
    fake.inject(Fault.REJECT)

    assert ["RejectedError", "ThrottledError"] == [await outcome(fake, batch_id) for _ in "ab"]


async def test_only_the_chosen_operations_are_troubled(batch_id: UUID) -> None:
    """``operations`` limits the chaos; by default it spares the HTTP-only reads."""
    fake = FakeDirectory()
    await fake.create_hospital(RECORD, batch_id)
    fake.start_chaos(Chaos({Fault.FAIL_BEFORE_STORING: 1.0}, operations={"create"}))

    listed = await fake.list_batch(batch_id)

    assert 1 == len(listed)
    assert "list_all" not in CHAOS_OPERATIONS
    assert {"create", "list", "activate", "delete_batch", "ping"} <= CHAOS_OPERATIONS


async def test_outages_take_their_share_of_the_time(batch_id: UUID) -> None:
    """``outage=0.1`` of 20 s: a healthy spell of 90-270 s, then every call 503 for 20 s."""
    clock = Clock()
    fake = FakeDirectory(clock=clock)
    fake.start_chaos(Chaos(outage=0.1, outage_seconds=20.0, seed=5))

    down: list[float] = []
    for second in range(2000):
        clock.now = float(second)
        if await outcome(fake, batch_id) == "MaybeLandedError":  # a 503
            down.append(clock.now)

    outages = fake.stats.chaos["outage"]
    assert 7 <= outages <= 20, outages  # 2000 s at one outage per 200 s or so
    assert 20 * outages == len(down)
    assert 90 <= down[0] <= 270
    assert 0 == fake.stats.faults


async def test_reset_keeps_the_mode_and_starts_it_afresh(batch_id: UUID) -> None:
    """Chaos is a setting: a reset (an upstream restart) keeps it, draws again from the seed."""
    fake = FakeDirectory()
    fake.start_chaos(Chaos(ALL_FAULTS, seed=11))
    first = [await outcome(fake, batch_id) for _ in range(30)]

    fake.reset()
    fake.clear_faults()
    again = [await outcome(fake, batch_id) for _ in range(30)]
    fake.stop_chaos()

    assert first == again
    assert "ok" == await outcome(fake, batch_id)
    assert fake.chaos is None


def test_the_spelling_reads_back() -> None:
    """``Chaos.parse`` reads what ``describe`` writes; ``off`` is no chaos."""
    text = (
        "throttle=0.1,fail_before_storing=0.1,fail_after_storing=0.1,"
        "error_after_storing=0.1,hold=0.1:3,hold=0.02:6,outage=0.1:20"
    )
    chaos = Chaos.parse(text, seed=9)

    assert chaos is not None
    assert (text, 9) == (chaos.describe(), chaos.seed)
    assert {3.0: 0.1, 6.0: 0.02} == chaos.holds
    assert (0.1, 20.0) == (chaos.outage, chaos.outage_seconds)
    assert Chaos.parse("off") is None
    assert Chaos.parse("") is None
    assert 20.0 == getattr(Chaos.parse("outage=0.2"), "outage_seconds", None)


@pytest.mark.parametrize(
    "text",
    [
        "throttle",
        "throttle=lots",
        "flood=0.1",
        "hold=0.1",
        "throttle=0.1:3",
        "throttle=1.5",
        "throttle=0.6,not_sent=0.6",
        "outage=1:20",
        "outage=0.1:0",
        "hold=0.1:-1",
    ],
)
def test_a_bad_spelling_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match=r"\S"):
        Chaos.parse(text)


def test_a_hold_is_not_a_rate() -> None:
    """``HOLD`` has its seconds: it goes in ``holds``, not ``rates``; unknown operations fail."""
    assert {} == Chaos({Fault.HOLD: 0.5}).rates
    with pytest.raises(ValueError, match="unknown operations"):
        Chaos(operations={"create", "teleport"})  # type: ignore[arg-type]
