"""HttpDirectoryClient against a scripted upstream (respx): every path, body and failure.

The contract suite covers the real upstream's behaviour; here are the answers a
proxy, a mock or a bad day can give, and the class each failure must get, since
the engine's retry safety rests on it.
"""

# The house style is `assert expected == actual`, which ruff's SIM300 calls yoda.

from __future__ import annotations

import datetime as dt
import email.utils
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any
from uuid import UUID

import httpx
import pytest
import respx

from hospital_bulk import (
    DirectoryError,
    DirectoryTimeouts,
    Hospital,
    HospitalRecord,
    HttpDirectoryClient,
    MaybeLandedError,
    NotSentError,
    RejectedError,
    ThrottledError,
)

pytestmark = pytest.mark.anyio

BASE = "http://directory.test"
BATCH = UUID("6f1c2a52-5a5e-4c1b-9d1e-8a0c7b3e2f10")
RECORD = HospitalRecord("General Hospital", "1 Main Street", "555-0100")
CREATED_AT = dt.datetime(2024, 5, 1, 12, 30, 15, 123456, tzinfo=dt.UTC)
FULL = {
    "id": 7,
    "name": "General Hospital",
    "address": "1 Main Street",
    "phone": "555-0100",
    "creation_batch_id": str(BATCH),
    "active": False,
    "created_at": "2024-05-01T12:30:15.123456",
}
HOSPITAL = Hospital(7, "General Hospital", "1 Main Street", "555-0100", BATCH, False, CREATED_AT)


@pytest.fixture(name="upstream")
def fixture_upstream() -> Iterator[respx.MockRouter]:
    """The scripted upstream; any request it was not told about fails the test."""
    with respx.mock(base_url=BASE, assert_all_called=False) as router:
        yield router


@pytest.fixture(name="client")
async def fixture_client(upstream: respx.MockRouter) -> AsyncIterator[HttpDirectoryClient]:
    """A client owning its httpx client, closed after the test."""
    async with HttpDirectoryClient(BASE) as client:
        yield client


def create_answering(upstream: respx.MockRouter, response: httpx.Response) -> respx.Route:
    return upstream.post("/hospitals/").mock(return_value=response)


# Successes.


async def test_create_posts_the_record_and_reads_the_hospital(
    upstream: respx.MockRouter, client: HttpDirectoryClient
) -> None:
    """POST /hospitals/ carries the record and the batch id; the naive time is UTC."""
    route = create_answering(upstream, httpx.Response(200, json=FULL))

    hospital = await client.create_hospital(RECORD, BATCH)

    assert HOSPITAL == hospital
    sent = json.loads(route.calls.last.request.content)
    assert {
        "name": "General Hospital",
        "address": "1 Main Street",
        "phone": "555-0100",
        "creation_batch_id": str(BATCH),
    } == sent


async def test_create_sends_a_missing_phone_as_null(
    upstream: respx.MockRouter, client: HttpDirectoryClient
) -> None:
    """A record without phone sends ``"phone": null``, which the upstream accepts."""
    route = create_answering(upstream, httpx.Response(200, json={**FULL, "phone": None}))

    await client.create_hospital(HospitalRecord("General Hospital", "1 Main Street"), BATCH)

    assert None is json.loads(route.calls.last.request.content)["phone"]


@pytest.mark.parametrize("status", [200, 201])
async def test_create_answered_with_only_an_id_is_filled_from_the_request(
    upstream: respx.MockRouter, client: HttpDirectoryClient, status: int
) -> None:
    """``{"id": 101}`` (200 or 201) is enough: the rest comes from what we sent."""
    create_answering(upstream, httpx.Response(status, json={"id": 101}))

    hospital = await client.create_hospital(RECORD, BATCH)

    expected = Hospital(101, "General Hospital", "1 Main Street", "555-0100", BATCH, False, None)
    assert expected == hospital


@pytest.mark.parametrize(
    "created_at", ["2024-05-01T12:30:15.123456", "2024-05-01T12:30:15.123456Z"]
)
async def test_created_at_is_utc_with_or_without_z(
    upstream: respx.MockRouter, client: HttpDirectoryClient, created_at: str
) -> None:
    """The service sends naive times, its docs show a Z: both mean UTC."""
    create_answering(upstream, httpx.Response(200, json={**FULL, "created_at": created_at}))

    hospital = await client.create_hospital(RECORD, BATCH)

    assert CREATED_AT == hospital.created_at


async def test_list_batch_reads_every_hospital(
    upstream: respx.MockRouter, client: HttpDirectoryClient
) -> None:
    """GET /hospitals/batch/{id} gives the batch's hospitals."""
    second = {**FULL, "id": 8, "name": "Second"}
    upstream.get(f"/hospitals/batch/{BATCH}").respond(200, json=[FULL, second])

    hospitals = await client.list_batch(BATCH)

    assert [7, 8] == [h.id for h in hospitals]


async def test_list_of_an_empty_batch_is_empty(
    upstream: respx.MockRouter, client: HttpDirectoryClient
) -> None:
    """The upstream's 404 for an empty or unknown batch is ``[]``."""
    upstream.get(f"/hospitals/batch/{BATCH}").respond(404, json={"detail": "No hospitals"})

    assert [] == await client.list_batch(BATCH)


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        (httpx.Response(200, json={"activated_count": 3, "message": "ok"}), 3),
        (httpx.Response(200, json={"activated": True}), None),
        (httpx.Response(200, json={}), None),
        (httpx.Response(200), None),
        (httpx.Response(204), None),
    ],
    ids=["count", "original-shape", "empty-object", "empty-200", "204"],
)
async def test_activate_returns_the_count_or_none_when_none_is_given(
    upstream: respx.MockRouter,
    client: HttpDirectoryClient,
    response: httpx.Response,
    expected: int | None,
) -> None:
    """PATCH .../activate: ``activated_count`` when sent, else None (the 2xx is the news)."""
    upstream.patch(f"/hospitals/batch/{BATCH}/activate").mock(return_value=response)

    assert expected == await client.activate_batch(BATCH)


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        (httpx.Response(200, json={"deleted_count": 2, "message": "ok"}), 2),
        (httpx.Response(200, json={}), 0),
        (httpx.Response(404, json={"detail": "No hospitals"}), 0),
    ],
    ids=["count", "empty-object", "missing"],
)
async def test_delete_batch_returns_the_count_and_zero_for_a_missing_batch(
    upstream: respx.MockRouter,
    client: HttpDirectoryClient,
    response: httpx.Response,
    expected: int,
) -> None:
    """DELETE /hospitals/batch/{id}: ``deleted_count``; a missing batch is 0."""
    upstream.delete(f"/hospitals/batch/{BATCH}").mock(return_value=response)

    assert expected == await client.delete_batch(BATCH)


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        (httpx.Response(204), True),
        (httpx.Response(200, json={}), True),
        (httpx.Response(404, json={"detail": "Hospital not found"}), False),
    ],
    ids=["204", "200", "404"],
)
async def test_delete_hospital_says_whether_it_existed(
    upstream: respx.MockRouter,
    client: HttpDirectoryClient,
    response: httpx.Response,
    expected: bool,
) -> None:
    """DELETE /hospitals/{id}: True once deleted, False when it was not there."""
    upstream.delete("/hospitals/7").mock(return_value=response)

    assert expected == await client.delete_hospital(7)


async def test_ping_gets_the_root(upstream: respx.MockRouter, client: HttpDirectoryClient) -> None:
    """GET / answering 200 is a healthy directory."""
    route = upstream.get("/").respond(200, json={"status": "OK"})

    await client.ping()

    assert route.called


# Failures answered by the upstream.


@pytest.mark.parametrize(
    ("response", "message"),
    [
        (
            httpx.Response(400, json={"detail": "Batch cannot exceed 20 hospitals"}),
            "Batch cannot exceed 20 hospitals",
        ),
        (
            httpx.Response(
                422,
                json={
                    "detail": [
                        {"type": "missing", "loc": ["body", "name"], "msg": "Field required"},
                        {"type": "value_error", "loc": ["body", "address"], "msg": "blank"},
                    ]
                },
            ),
            "body.name: Field required; body.address: blank",
        ),
        (httpx.Response(404, json={"detail": "Not Found"}), "Not Found"),
        (httpx.Response(409, json={"error": "conflict"}), "conflict"),
        (httpx.Response(413, text="too large\n"), "too large"),
        (httpx.Response(403), "403 Forbidden"),
    ],
    ids=["400-detail", "422-pydantic", "404", "409-error", "413-text", "403-empty"],
)
async def test_4xx_is_rejected_with_the_upstream_reason(
    upstream: respx.MockRouter, client: HttpDirectoryClient, response: httpx.Response, message: str
) -> None:
    """A 4xx other than 408/429 is permanent; the message is the upstream's reason."""
    create_answering(upstream, response)

    with pytest.raises(RejectedError) as caught:
        await client.create_hospital(RECORD, BATCH)

    assert (response.status_code, message) == (caught.value.status, str(caught.value))


async def test_activating_an_empty_batch_is_rejected_not_ignored(
    upstream: respx.MockRouter, client: HttpDirectoryClient
) -> None:
    """Unlike list and delete, activation's 404 is an error: nothing was activated."""
    upstream.patch(f"/hospitals/batch/{BATCH}/activate").respond(404, json={"detail": "none"})

    with pytest.raises(RejectedError) as caught:
        await client.activate_batch(BATCH)

    assert 404 == caught.value.status


def in_two_minutes() -> str:
    return email.utils.format_datetime(dt.datetime.now(dt.UTC) + dt.timedelta(minutes=2), True)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Retry-After": "7"}, 7.0),
        ({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}, 0.0),
        ({"Retry-After": "soon"}, None),
    ],
    ids=["seconds", "past-date", "garbage"],
)
async def test_429_reads_retry_after(
    upstream: respx.MockRouter,
    client: HttpDirectoryClient,
    headers: dict[str, str],
    expected: float | None,
) -> None:
    """Retry-After in seconds, or as a date (past means now); unreadable means unknown."""
    create_answering(upstream, httpx.Response(429, headers=headers, json={"error": "slow"}))

    with pytest.raises(ThrottledError) as caught:
        await client.create_hospital(RECORD, BATCH)

    assert expected == caught.value.retry_after


async def test_429_with_a_future_date_waits_until_then(
    upstream: respx.MockRouter, client: HttpDirectoryClient
) -> None:
    """An HTTP-date two minutes ahead is about 120 seconds."""
    headers = {"Retry-After": in_two_minutes()}
    create_answering(upstream, httpx.Response(429, headers=headers, json={"error": "slow"}))

    with pytest.raises(ThrottledError) as caught:
        await client.create_hospital(RECORD, BATCH)

    assert caught.value.retry_after is not None
    assert 100.0 < caught.value.retry_after <= 120.0


async def test_429_like_the_real_one(
    upstream: respx.MockRouter, client: HttpDirectoryClient
) -> None:
    """The real upstream sends no Retry-After and words the limit in ``error``."""
    body = {"error": "Rate limit exceeded: 30 per 1 minute"}
    create_answering(upstream, httpx.Response(429, json=body))

    with pytest.raises(ThrottledError) as caught:
        await client.create_hospital(RECORD, BATCH)

    assert (429, None, "Rate limit exceeded: 30 per 1 minute") == (
        caught.value.status,
        caught.value.retry_after,
        str(caught.value),
    )


@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(500, text="Internal Server Error"),
        httpx.Response(502),
        httpx.Response(503, json={"detail": "unavailable"}),
        httpx.Response(408, json={"detail": "timeout"}),
        httpx.Response(307, headers={"location": f"{BASE}/hospitals"}),
    ],
    ids=["500", "502", "503", "408", "307"],
)
async def test_5xx_408_and_redirects_may_have_landed(
    upstream: respx.MockRouter, client: HttpDirectoryClient, response: httpx.Response
) -> None:
    """The upstream may have acted before failing (or behind a redirect): MaybeLanded."""
    create_answering(upstream, response)

    with pytest.raises(MaybeLandedError) as caught:
        await client.create_hospital(RECORD, BATCH)

    assert response.status_code == caught.value.status


@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(200, text="<html>gateway</html>"),
        httpx.Response(200, json={"name": "no id"}),
        httpx.Response(200, json={"id": "7"}),
        httpx.Response(200, json={"id": True}),
        httpx.Response(200, json=[{"id": 7}]),
        httpx.Response(200, json={"id": 7, "creation_batch_id": "not-a-uuid"}),
    ],
    ids=["html", "no-id", "string-id", "bool-id", "list", "bad-batch-id"],
)
async def test_a_create_success_we_cannot_read_may_have_landed(
    upstream: respx.MockRouter, client: HttpDirectoryClient, response: httpx.Response
) -> None:
    """A 2xx says the upstream acted; without a usable id we cannot know what it made."""
    create_answering(upstream, response)

    with pytest.raises(MaybeLandedError) as caught:
        await client.create_hospital(RECORD, BATCH)

    assert 200 == caught.value.status


@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(200, text="not json"),
        httpx.Response(200, json={"hospitals": []}),
        httpx.Response(200, json=[{"id": 7}]),
    ],
    ids=["not-json", "not-a-list", "hospital-without-name"],
)
async def test_an_unreadable_listing_is_an_error(
    upstream: respx.MockRouter, client: HttpDirectoryClient, response: httpx.Response
) -> None:
    """A listing we cannot read is never taken for an empty batch."""
    upstream.get(f"/hospitals/batch/{BATCH}").mock(return_value=response)

    with pytest.raises(MaybeLandedError):
        await client.list_batch(BATCH)


@pytest.mark.parametrize(
    "response",
    [httpx.Response(200, text="activated"), httpx.Response(200, json={"activated_count": "3"})],
    ids=["not-json", "string-count"],
)
async def test_an_unreadable_activation_may_have_landed(
    upstream: respx.MockRouter, client: HttpDirectoryClient, response: httpx.Response
) -> None:
    """Activation answered with a body we cannot read: it may have happened."""
    upstream.patch(f"/hospitals/batch/{BATCH}/activate").mock(return_value=response)

    with pytest.raises(MaybeLandedError):
        await client.activate_batch(BATCH)


# Failures of the connection.

NOT_SENT: list[type[httpx.TransportError]] = [
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
]
MAYBE_LANDED: list[type[httpx.TransportError]] = [
    httpx.ReadTimeout,
    httpx.WriteTimeout,
    httpx.ReadError,
    httpx.WriteError,
    httpx.RemoteProtocolError,
]


@pytest.mark.parametrize("error", NOT_SENT, ids=lambda e: e.__name__)
async def test_nothing_sent_is_not_sent(
    upstream: respx.MockRouter, client: HttpDirectoryClient, error: type[Exception]
) -> None:
    """Connect errors and pool timeouts happen before the request leaves: NotSent."""
    upstream.post("/hospitals/").mock(side_effect=error)

    with pytest.raises(NotSentError) as caught:
        await client.create_hospital(RECORD, BATCH)

    assert (None, error) == (caught.value.status, type(caught.value.__cause__))


@pytest.mark.parametrize("error", MAYBE_LANDED, ids=lambda e: e.__name__)
async def test_a_broken_exchange_may_have_landed(
    upstream: respx.MockRouter, client: HttpDirectoryClient, error: type[Exception]
) -> None:
    """Timeouts and broken connections after sending: the upstream may have acted."""
    upstream.post("/hospitals/").mock(side_effect=error)

    with pytest.raises(MaybeLandedError) as caught:
        await client.create_hospital(RECORD, BATCH)

    assert (None, error) == (caught.value.status, type(caught.value.__cause__))


@pytest.mark.parametrize("error", NOT_SENT + MAYBE_LANDED, ids=lambda e: e.__name__)
async def test_reads_are_classified_the_same_way(
    upstream: respx.MockRouter, client: HttpDirectoryClient, error: type[Exception]
) -> None:
    """Listing and pinging raise DirectoryErrors too: the engine decides on retries."""
    upstream.get(f"/hospitals/batch/{BATCH}").mock(side_effect=error)
    upstream.get("/").mock(side_effect=error)

    with pytest.raises(DirectoryError) as listing:
        await client.list_batch(BATCH)
    with pytest.raises(DirectoryError) as ping:
        await client.ping()

    expected = NotSentError if error in NOT_SENT else MaybeLandedError
    assert (expected, expected) == (type(listing.value), type(ping.value))


async def test_a_refused_connection_is_not_sent() -> None:
    """A real refused connection (nothing listens on port 1) is NotSent."""
    async with HttpDirectoryClient("http://127.0.0.1:1") as client:
        with pytest.raises(NotSentError):
            await client.ping()


# Configuration.


@pytest.mark.parametrize("base_url", ["http://proxy.test/api", "http://proxy.test/api/"])
async def test_base_url_may_end_with_a_slash(base_url: str) -> None:
    """Paths are appended to the base URL whether or not it ends with a slash."""
    with respx.mock(base_url="http://proxy.test/api") as upstream:
        route = upstream.get(f"/hospitals/batch/{BATCH}").respond(200, json=[FULL])
        async with HttpDirectoryClient(base_url) as client:
            await client.list_batch(BATCH)

    assert f"http://proxy.test/api/hospitals/batch/{BATCH}" == str(route.calls.last.request.url)


async def test_a_given_http_client_is_used_but_not_closed() -> None:
    """A shared httpx client stays open after ``aclose``; its own base_url is ignored."""
    requests: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return httpx.Response(200, json={"status": "OK"})

    transport = httpx.MockTransport(handler)
    async with httpx.AsyncClient(transport=transport, base_url="http://elsewhere.test") as http:
        async with HttpDirectoryClient(BASE, http=http) as client:
            await client.ping()

        assert not http.is_closed
    assert [f"{BASE}/"] == [str(r.url) for r in requests]


async def test_the_default_timeouts_allow_slow_creates(
    upstream: respx.MockRouter, client: HttpDirectoryClient
) -> None:
    """An owned client applies DirectoryTimeouts: a read allows 5 s creates after a cold start."""
    route = create_answering(upstream, httpx.Response(200, json=FULL))

    await client.create_hospital(RECORD, BATCH)

    timeouts: dict[str, Any] = route.calls.last.request.extensions["timeout"]
    defaults = DirectoryTimeouts()
    assert {
        "connect": defaults.connect,
        "read": defaults.read,
        "write": defaults.write,
        "pool": defaults.pool,
    } == timeouts
    assert defaults.read >= 35.0


@pytest.mark.parametrize("base_url", ["directory.test", "ftp://directory.test", "http://"])
def test_a_base_url_must_be_absolute_http(base_url: str) -> None:
    """A relative or non-HTTP base URL is refused at once."""
    with pytest.raises(ValueError, match="base_url"):
        HttpDirectoryClient(base_url)


async def test_an_unreadable_listing_is_not_asked_again(
    upstream: respx.MockRouter, client: HttpDirectoryClient
) -> None:
    """A 2xx listing that is not JSON: UnreadableAnswerError (a MaybeLandedError), and
    the engine's retries leave it alone: the same question gets the same answer."""
    from hospital_bulk import CallKind, ProcessorSettings, UnreadableAnswerError
    from hospital_bulk._calls import UpstreamCalls
    from hospital_bulk._pacing import LocalRateGate, Pacer

    route = upstream.get(f"/hospitals/batch/{BATCH}").mock(
        return_value=httpx.Response(200, text="<html>maintenance</html>")
    )
    settings = ProcessorSettings()
    gate = LocalRateGate(create_limit=None, other_limit=None)

    async def ignore(delay: float) -> None:
        return None

    calls = UpstreamCalls(client, Pacer(concurrency=1, gate=gate), settings.retry, ignore)
    with pytest.raises(UnreadableAnswerError):
        await calls.call(CallKind.OTHER, lambda: client.list_batch(BATCH), idempotent=True)
    assert 1 == route.call_count
