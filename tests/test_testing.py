"""FakeDirectory itself: fault rules, the upstream's quirks, limits, stats and its HTTP face.

What every DirectoryClient must do is in hospital_bulk.testing.directory_contract (run
by test_directory_contract.py); here is what only the fake has (inject, stats,
capacity, an injectable clock) and the HTTP details the client never asks for.
"""

# The house style is `assert expected == actual`, which ruff's SIM300 calls yoda.

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import AsyncIterator
from uuid import UUID, uuid4

import anyio
import httpx
import pytest

from hospital_bulk import (
    HospitalRecord,
    MaybeLandedError,
    NotSentError,
    RateLimit,
    RejectedError,
    ThrottledError,
)
from hospital_bulk.testing import OPERATIONS, DirectoryStats, FakeDirectory, Fault

pytestmark = pytest.mark.anyio

BASE = "http://directory.test"


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(name="fake")
def fixture_fake() -> FakeDirectory:
    return FakeDirectory()


@pytest.fixture(name="http")
async def fixture_http(fake: FakeDirectory) -> AsyncIterator[httpx.AsyncClient]:
    """Raw HTTP to the fake, to see exactly what the upstream would answer."""
    transport = httpx.MockTransport(fake.http_handler)
    async with httpx.AsyncClient(transport=transport, base_url=BASE) as http:
        yield http


@pytest.fixture(name="batch_id")
def fixture_batch_id() -> UUID:
    return uuid4()


def record(name: str = "General Hospital") -> HospitalRecord:
    return HospitalRecord(name, "1 Main Street", "555-0100")


def body(batch_id: UUID, name: str = "General Hospital") -> dict[str, object]:
    return {"name": name, "address": "1 Main Street", "creation_batch_id": str(batch_id)}


async def outcome(fake: FakeDirectory, batch_id: UUID, name: str = "General Hospital") -> str:
    """The name of what a create raised, or "ok"."""
    try:
        await fake.create_hospital(record(name), batch_id)
    except Exception as error:
        return type(error).__name__
    return "ok"


# Fault rules.


async def test_a_fault_lasts_for_times_calls(fake: FakeDirectory, batch_id: UUID) -> None:
    """``times=2`` fails the next two calls, then the rule is gone."""
    fake.inject(Fault.REJECT, times=2)

    outcomes = [await outcome(fake, batch_id) for _ in range(3)]

    assert ["RejectedError", "RejectedError", "ok"] == outcomes


async def test_a_named_fault_waits_for_its_hospital(fake: FakeDirectory, batch_id: UUID) -> None:
    """With ``name``, only a create of that hospital suffers the fault."""
    fake.inject(Fault.NOT_SENT, name="Target")

    outcomes = [await outcome(fake, batch_id, name) for name in ["Other", "Target", "Target"]]

    assert ["ok", "NotSentError", "ok"] == outcomes


async def test_rules_apply_in_the_order_added(fake: FakeDirectory, batch_id: UUID) -> None:
    """When two rules match, the one added first is used first."""
    fake.inject(Fault.NOT_SENT)
    fake.inject(Fault.THROTTLE)

    outcomes = [await outcome(fake, batch_id) for _ in range(3)]

    assert ["NotSentError", "ThrottledError", "ok"] == outcomes


async def test_a_fault_touches_only_its_operation(fake: FakeDirectory, batch_id: UUID) -> None:
    """A rule for listing leaves creates alone."""
    fake.inject(Fault.FAIL_BEFORE_STORING, operation="list")
    await fake.create_hospital(record(), batch_id)

    with pytest.raises(MaybeLandedError):
        await fake.list_batch(batch_id)
    assert 1 == len(await fake.list_batch(batch_id))


async def test_clear_faults_makes_the_directory_healthy(
    fake: FakeDirectory, batch_id: UUID
) -> None:
    """Rules not used up yet are forgotten."""
    fake.inject(Fault.NOT_SENT, times=5)
    await outcome(fake, batch_id)

    fake.clear_faults()

    assert "ok" == await outcome(fake, batch_id)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"operation": "upsert"}, "unknown operation"),
        ({"times": 0}, "times"),
        ({"operation": "list", "name": "X"}, "name only selects creates"),
    ],
)
def test_a_rule_that_could_never_apply_is_refused(
    fake: FakeDirectory, kwargs: dict[str, object], message: str
) -> None:
    """Typos in a rule fail loudly rather than silently never firing."""
    with pytest.raises(ValueError, match=message):
        fake.inject(Fault.REJECT, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("operation", OPERATIONS)
async def test_every_operation_can_be_faulted_over_http(
    fake: FakeDirectory, http: httpx.AsyncClient, batch_id: UUID, operation: str
) -> None:
    """Each operation, reached through its route, answers an injected REJECT with 400."""
    hospital = await fake.create_hospital(record(), batch_id)
    requests = {
        "create": ("POST", "/hospitals/", body(batch_id)),
        "list": ("GET", f"/hospitals/batch/{batch_id}", None),
        "activate": ("PATCH", f"/hospitals/batch/{batch_id}/activate", None),
        "delete_batch": ("DELETE", f"/hospitals/batch/{batch_id}", None),
        "delete_hospital": ("DELETE", f"/hospitals/{hospital.id}", None),
        "ping": ("GET", "/", None),
        "list_all": ("GET", "/hospitals/", None),
        "get_hospital": ("GET", f"/hospitals/{hospital.id}", None),
        "update_hospital": ("PUT", f"/hospitals/{hospital.id}", body(batch_id)),
    }
    method, path, json = requests[operation]
    fake.inject(Fault.REJECT, operation=operation)  # type: ignore[arg-type]

    response = await http.request(method, path, json=json)

    assert (400, 1) == (response.status_code, fake.stats.faults)


# Faults as the HTTP face shows them.


async def test_http_faults_look_like_the_network_and_the_server(
    fake: FakeDirectory, http: httpx.AsyncClient, batch_id: UUID
) -> None:
    """REJECT is a 400, THROTTLE the upstream's 429, FAIL_BEFORE_STORING a 500."""
    for fault in [Fault.REJECT, Fault.THROTTLE, Fault.FAIL_BEFORE_STORING]:
        fake.inject(fault)

    answers = [await http.post("/hospitals/", json=body(batch_id)) for _ in range(3)]

    assert [400, 429, 500] == [a.status_code for a in answers]
    assert {"error": "Rate limit exceeded: 30 per 1 minute"} == answers[1].json()
    assert "Retry-After" not in answers[1].headers
    assert [] == fake.hospitals


async def test_not_sent_over_http_is_a_connect_error(
    fake: FakeDirectory, http: httpx.AsyncClient, batch_id: UUID
) -> None:
    """NOT_SENT raises httpx.ConnectError and stores nothing."""
    fake.inject(Fault.NOT_SENT)

    with pytest.raises(httpx.ConnectError):
        await http.post("/hospitals/", json=body(batch_id))
    assert [] == fake.hospitals


async def test_fail_after_storing_over_http_cuts_the_connection(
    fake: FakeDirectory, http: httpx.AsyncClient, batch_id: UUID
) -> None:
    """FAIL_AFTER_STORING stores the hospital, then the answer never comes."""
    fake.inject(Fault.FAIL_AFTER_STORING)

    with pytest.raises(httpx.RemoteProtocolError):
        await http.post("/hospitals/", json=body(batch_id))
    assert 1 == len(fake.batch(batch_id))


async def test_a_lost_answer_is_lost_even_when_it_was_an_error(
    fake: FakeDirectory, batch_id: UUID
) -> None:
    """FAIL_AFTER_STORING hides any answer: a second activation's 400 included."""
    await fake.create_hospital(record(), batch_id)
    await fake.activate_batch(batch_id)
    fake.inject(Fault.FAIL_AFTER_STORING, operation="activate")

    with pytest.raises(MaybeLandedError):
        await fake.activate_batch(batch_id)


# The upstream's quirks.


async def test_concurrent_creates_overshoot_the_cap(batch_id: UUID) -> None:
    """The cap is counted before the slow part, so 25 creates at once all land,
    as upstream; a create sent after them is refused."""
    fake = FakeDirectory(latency=0.05)

    async with anyio.create_task_group() as group:
        for n in range(25):
            group.start_soon(fake.create_hospital, record(f"Hospital {n}"), batch_id)

    assert (25, 25) == (len(fake.batch(batch_id)), fake.stats.max_creates_in_flight)
    with pytest.raises(RejectedError):
        await fake.create_hospital(record(), batch_id)


async def test_a_create_abandoned_by_its_caller_still_lands(batch_id: UUID) -> None:
    """Giving up on a slow create does not undo it: the upstream finishes its work."""
    fake = FakeDirectory(latency=10.0)

    with anyio.move_on_after(0.01):
        await fake.create_hospital(record(), batch_id)

    assert 1 == len(fake.batch(batch_id))
    assert 0 == fake.stats.creates_in_flight


async def test_past_capacity_the_oldest_go_first(batch_id: UUID) -> None:
    """Storage keeps ``capacity`` hospitals, dropping the oldest."""
    fake = FakeDirectory(capacity=3)

    for n in range(5):
        await fake.create_hospital(record(f"Hospital {n}"), batch_id)

    assert [3, 4, 5] == [h.id for h in fake.hospitals]
    assert [3, 4, 5] == [h.id for h in await fake.list_batch(batch_id)]


async def test_stats_count_calls_429s_and_faults(batch_id: UUID) -> None:
    """Calls per operation (failed ones too), 429s and faults in total."""
    fake = FakeDirectory(create_limit=RateLimit(1, 60.0), clock=Clock())
    fake.inject(Fault.NOT_SENT)
    for _ in range(3):
        await outcome(fake, batch_id)
    await fake.list_batch(batch_id)

    expected = DirectoryStats(
        calls=Counter(create=3, list=1),
        throttled=1,
        faults=1,
        max_creates_in_flight=1,
    )
    assert expected == fake.stats


# Rate limits.


async def test_a_window_opens_at_the_first_request_after_the_last_closed(
    batch_id: UUID,
) -> None:
    """Fixed windows as slowapi keeps them: they start when a request comes, not on the
    minute, and allow ``count`` requests until ``window`` seconds later."""
    clock = Clock()
    fake = FakeDirectory(create_limit=RateLimit(2, 60.0), clock=clock)
    outcomes = []

    for now in [0.0, 100.0, 130.0, 159.9, 160.0, 161.0, 162.0]:
        clock.now = now
        outcomes.append(await outcome(fake, batch_id, f"At {now}"))

    expected = ["ok", "ok", "ok", "ThrottledError", "ok", "ok", "ThrottledError"]
    assert expected == outcomes


async def test_a_sliding_limiter_counts_the_window_before_each_request(
    batch_id: UUID,
) -> None:
    """``limit_mode="sliding"``: a request is refused while ``count`` were admitted in the
    ``window`` seconds before it, wherever a fixed window would have turned over; refused
    requests do not count."""
    clock = Clock()
    sliding = FakeDirectory(create_limit=RateLimit(2, 60.0), clock=clock, limit_mode="sliding")
    fixed = FakeDirectory(create_limit=RateLimit(2, 60.0), clock=clock)
    outcomes: dict[str, list[str]] = {"sliding": [], "fixed": []}

    for now in [0.0, 50.0, 59.9, 60.0, 61.0, 109.9, 110.0]:
        clock.now = now
        outcomes["sliding"].append(await outcome(sliding, batch_id, f"At {now}"))
        outcomes["fixed"].append(await outcome(fixed, batch_id, f"At {now}"))

    assert {
        "sliding": ["ok", "ok", "ThrottledError", "ok", "ThrottledError", "ThrottledError", "ok"],
        "fixed": ["ok", "ok", "ThrottledError", "ok", "ok", "ThrottledError", "ThrottledError"],
    } == outcomes


def test_an_unknown_limit_mode_is_refused() -> None:
    """Only ``fixed`` and ``sliding`` exist."""
    with pytest.raises(ValueError, match="limit_mode"):
        FakeDirectory(limit_mode="leaky")  # type: ignore[arg-type]


async def test_each_operation_has_its_own_window_and_ping_none(batch_id: UUID) -> None:
    """``other_limit`` counts listing and deleting apart; ping is never limited."""
    fake = FakeDirectory(other_limit=RateLimit(1, 60.0), clock=Clock())
    await fake.create_hospital(record(), batch_id)

    await fake.list_batch(batch_id)
    await fake.delete_hospital(999)
    for _ in range(3):
        await fake.ping()
    with pytest.raises(ThrottledError) as caught:
        await fake.list_batch(batch_id)

    assert "Rate limit exceeded: 1 per 1 minute" == str(caught.value)


# The HTTP face: what the upstream answers that our client never asks for.


async def test_a_wrong_trailing_slash_is_redirected(
    http: httpx.AsyncClient, batch_id: UUID
) -> None:
    """POST /hospitals and GET /hospitals/batch/{id}/ get Starlette's 307."""
    create = await http.post("/hospitals", json=body(batch_id))
    listing = await http.get(f"/hospitals/batch/{batch_id}/")

    assert [307, 307] == [create.status_code, listing.status_code]
    assert f"{BASE}/hospitals/" == create.headers["location"]
    assert f"{BASE}/hospitals/batch/{batch_id}" == listing.headers["location"]


async def test_create_answers_the_full_hospital_with_a_naive_time(
    http: httpx.AsyncClient, batch_id: UUID
) -> None:
    """200 (not 201) with every field; created_at has no timezone, like the service's."""
    response = await http.post("/hospitals/", json=body(batch_id))

    created = response.json()
    assert (200, 1, None, False, str(batch_id)) == (
        response.status_code,
        created["id"],
        created["phone"],
        created["active"],
        created["creation_batch_id"],
    )
    assert None is dt.datetime.fromisoformat(created["created_at"]).tzinfo


async def test_a_hospital_without_a_batch_starts_active(http: httpx.AsyncClient) -> None:
    """No creation_batch_id: active at once, in no batch."""
    response = await http.post("/hospitals/", json={"name": "Solo", "address": "2 Side Road"})

    assert (True, None) == (response.json()["active"], response.json()["creation_batch_id"])


@pytest.mark.parametrize(
    ("content", "loc"),
    [
        (b'{"address": "1 Main Street"}', ["body", "name"]),
        (b'{"name": "  ", "address": "1 Main Street"}', ["body", "name"]),
        (b'{"name": 5, "address": "1 Main Street"}', ["body", "name"]),
        (b'{"name": "A", "address": "B", "phone": 5}', ["body", "phone"]),
        (b'{"name": "A", "address": "B", "creation_batch_id": "x"}', ["body", "creation_batch_id"]),
        (b"not json", ["body"]),
        (b"[1]", ["body"]),
    ],
    ids=["missing", "blank", "number", "phone", "batch-id", "not-json", "not-object"],
)
async def test_an_invalid_create_body_is_a_422(
    fake: FakeDirectory, http: httpx.AsyncClient, content: bytes, loc: list[str]
) -> None:
    """Bodies pydantic would refuse get FastAPI's 422 shape, and store nothing."""
    headers = {"content-type": "application/json"}

    response = await http.post("/hospitals/", content=content, headers=headers)

    assert (422, loc) == (response.status_code, response.json()["detail"][0]["loc"])
    assert [] == fake.hospitals


async def test_a_non_uuid_batch_id_is_a_422(http: httpx.AsyncClient) -> None:
    """Batch ids in paths are UUIDs; anything else fails validation."""
    response = await http.get("/hospitals/batch/not-a-uuid")

    assert (
        422,
        ["path", "batch_id"],
    ) == (response.status_code, response.json()["detail"][0]["loc"])


async def test_batch_answers_carry_counts_and_messages(
    fake: FakeDirectory, http: httpx.AsyncClient, batch_id: UUID
) -> None:
    """Activation and batch deletion answer ``*_count`` with a message."""
    await fake.create_hospital(record(), batch_id)

    activated = await http.patch(f"/hospitals/batch/{batch_id}/activate")
    deleted = await http.delete(f"/hospitals/batch/{batch_id}")

    assert (1, 1) == (activated.json()["activated_count"], deleted.json()["deleted_count"])
    assert {"activated_count", "message"} == set(activated.json())
    assert {"deleted_count", "message"} == set(deleted.json())


async def test_single_hospital_routes(
    fake: FakeDirectory, http: httpx.AsyncClient, batch_id: UUID
) -> None:
    """GET and PUT /hospitals/{id}; PUT changes name, address and phone, never active."""
    hospital = await fake.create_hospital(record(), batch_id)
    change = {"name": "Renamed", "address": "9 New Road", "phone": None, "active": True}

    got = await http.get(f"/hospitals/{hospital.id}")
    put = await http.put(f"/hospitals/{hospital.id}", json=change)
    missing = await http.get("/hospitals/999")

    assert [200, 200, 404] == [got.status_code, put.status_code, missing.status_code]
    assert ("Renamed", "9 New Road", None, False) == (
        put.json()["name"],
        put.json()["address"],
        put.json()["phone"],
        put.json()["active"],
    )
    assert {"detail": "Hospital not found"} == missing.json()


async def test_delete_hospital_is_204_then_404(
    fake: FakeDirectory, http: httpx.AsyncClient, batch_id: UUID
) -> None:
    """Deleting a hospital answers 204 with no body; again, 404."""
    hospital = await fake.create_hospital(record(), batch_id)

    first = await http.delete(f"/hospitals/{hospital.id}")
    second = await http.delete(f"/hospitals/{hospital.id}")

    assert (204, b"", 404) == (first.status_code, first.content, second.status_code)


async def test_root_list_all_and_unknown_routes(
    fake: FakeDirectory, http: httpx.AsyncClient, batch_id: UUID
) -> None:
    """GET / is OK, GET /hospitals/ lists all, an unknown path 404s, a wrong method 405s."""
    await fake.create_hospital(record(), batch_id)

    root = await http.get("/")
    every = await http.get("/hospitals/")
    unknown = await http.get("/clinics/")
    wrong_method = await http.patch("/hospitals/")

    assert {"status": "OK"} == root.json()
    assert [1] == [h["id"] for h in every.json()]
    assert [404, 405] == [unknown.status_code, wrong_method.status_code]


async def test_the_client_face_raises_what_the_http_client_would(
    fake: FakeDirectory, batch_id: UUID
) -> None:
    """Direct calls map answers to the library's exceptions, with statuses."""
    fake.inject(Fault.NOT_SENT, operation="ping")

    with pytest.raises(NotSentError):
        await fake.ping()
    with pytest.raises(RejectedError) as caught:
        await fake.activate_batch(batch_id)

    assert 404 == caught.value.status
