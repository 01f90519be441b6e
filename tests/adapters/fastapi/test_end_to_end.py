"""End to end: the service and the stand-in directory, two uvicorn processes on loopback.

The service is started as a deployment would start it (``hospital_bulk_fastapi.main:app``,
settings from the environment) and talks HTTP to the stand-in, whose admin endpoint
injects faults that break real connections.
"""

from __future__ import annotations

import collections
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from tests.helpers import csv_bytes, records
from tests.servers import UvicornServer

pytestmark = pytest.mark.anyio

DIRECTORY_APP = "hospital_bulk_standin.app:app"
SERVICE_APP = "hospital_bulk_fastapi.main:app"
#: The stand-in without rate limits: faults are injected, not provoked.
DIRECTORY_ENV = {
    "HOSPITAL_DIRECTORY_LATENCY": "0.05",
    "HOSPITAL_DIRECTORY_CREATE_LIMIT": "0",
    "HOSPITAL_DIRECTORY_OTHER_LIMIT": "0",
    "HOSPITAL_DIRECTORY_ADMIN": "1",
}


@pytest.fixture(name="directory", scope="module")
def fixture_directory() -> Iterator[UvicornServer]:
    with UvicornServer(DIRECTORY_APP, env=DIRECTORY_ENV) as server:
        yield server


@pytest.fixture(name="service", scope="module")
def fixture_service(directory: UvicornServer) -> Iterator[UvicornServer]:
    """The service on the stand-in; every setting spelled out against a leaking environment."""
    env = {
        "HOSPITAL_API_BASE": directory.url,
        "HOSPITAL_BULK_STORE": "memory://",
        "HOSPITAL_BULK_RATE_LIMIT": "0",
        "HOSPITAL_BULK_RATE_WINDOW": "60",
        "HOSPITAL_BULK_CONCURRENCY": "20",
        "HOSPITAL_BULK_MAX_ROWS": "10000",
        "HOSPITAL_BULK_MAX_UPLOAD_BYTES": "1048576",
        "HOSPITAL_BULK_SYNC_TIMEOUT": "60",
        "HOSPITAL_BULK_EMBEDDED_LATENCY": "0.5",
        # Unanswered creates can land until 4 s after their send: listed after that.
        "HOSPITAL_BULK_DIRECTORY_TIMEOUT": "3",
        "HOSPITAL_BULK_LANDING_MARGIN": "1",
    }
    with UvicornServer(SERVICE_APP, env=env) as server:
        yield server


@pytest.fixture(name="upstream")
async def fixture_upstream(directory: UvicornServer) -> AsyncIterator[httpx.AsyncClient]:
    """HTTP to the stand-in, reset: no hospitals, no faults left over."""
    async with httpx.AsyncClient(base_url=directory.url, timeout=30) as http:
        assert 204 == (await http.post("/_standin/reset")).status_code
        yield http


@pytest.fixture(name="api")
async def fixture_api(service: UvicornServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=service.url, timeout=90) as http:
        yield http


async def inject(upstream: httpx.AsyncClient, fault: str, **rule: object) -> None:
    response = await upstream.post("/_standin/faults", json={"fault": fault, **rule})
    assert 201 == response.status_code, response.text


async def held_upstream(upstream: httpx.AsyncClient, batch_id: str) -> list[dict[str, Any]]:
    response = await upstream.get(f"/hospitals/batch/{batch_id}")
    assert 200 == response.status_code, response.text
    hospitals: list[dict[str, Any]] = response.json()
    return hospitals


async def upload_20(api: httpx.AsyncClient) -> Any:
    response = await api.post(
        "/hospitals/bulk", files={"file": ("twenty.csv", csv_bytes(records(20)), "text/csv")}
    )
    assert 200 == response.status_code, response.text
    return response.json()


async def test_a_20_row_upload_lands_once_and_active(
    api: httpx.AsyncClient, upstream: httpx.AsyncClient
) -> None:
    """20 rows: the original answer with 20 `created_and_activated`; the stand-in holds
    exactly those 20, active, under the batch_id."""
    body = await upload_20(api)

    assert (20, 20, 0, True) == (
        body["total_hospitals"],
        body["processed_hospitals"],
        body["failed_hospitals"],
        body["batch_activated"],
    )
    assert ["created_and_activated"] * 20 == [row["status"] for row in body["hospitals"]]
    held = await held_upstream(upstream, body["batch_id"])
    assert sorted(r.name for r in records(20)) == sorted(h["name"] for h in held)
    assert {row["hospital_id"] for row in body["hospitals"]} == {h["id"] for h in held}
    assert all(h["active"] for h in held)


async def test_lost_answers_leave_exactly_one_hospital_per_row(
    api: httpx.AsyncClient, upstream: httpx.AsyncClient
) -> None:
    """Stored-then-500 on two rows and stored-then-cut-connection on two others: after the
    job (and a resume if it needed one) each row is upstream exactly once, all active."""
    for name in ("Hospital 3", "Hospital 7"):
        await inject(upstream, "error_after_storing", name=name)
    for name in ("Hospital 11", "Hospital 15"):
        await inject(upstream, "fail_after_storing", name=name)

    body = await upload_20(api)
    if body["state"] != "completed":
        resumed = await api.post(f"/hospitals/bulk/{body['batch_id']}/resume")
        body = resumed.json()

    assert ("completed", 20) == (body["state"], body["processed_hospitals"])
    held = await held_upstream(upstream, body["batch_id"])
    copies = collections.Counter(h["name"] for h in held)
    assert {record.name: 1 for record in records(20)} == dict(copies)
    assert all(h["active"] for h in held)
    stats = (await upstream.get("/_standin/stats")).json()
    assert 4 == stats["faults"]


async def test_a_lost_answer_that_cannot_be_checked_is_settled_by_resume(
    api: httpx.AsyncClient, upstream: httpx.AsyncClient
) -> None:
    """A create stored-then-cut whose batch cannot be listed: the row stays `unknown` (never
    sent again blindly), the batch inactive; once the directory lists again, a resume finds
    the hospital, sends nothing twice and activates the batch."""
    await inject(upstream, "fail_after_storing", name="Hospital 5")
    await inject(upstream, "reject", operation="list", times=20)

    first = await upload_20(api)
    assert 204 == (await upstream.delete("/_standin/faults")).status_code
    resumed = (await api.post(f"/hospitals/bulk/{first['batch_id']}/resume")).json()

    assert ("completed_with_errors", False) == (first["state"], first["batch_activated"])
    assert ("failed", "maybe_landed") == (
        first["hospitals"][4]["status"],
        first["hospitals"][4]["error_code"],
    )
    assert ("completed", True) == (resumed["state"], resumed["batch_activated"])
    held = await held_upstream(upstream, first["batch_id"])
    assert {record.name: 1 for record in records(20)} == dict(
        collections.Counter(h["name"] for h in held)
    )
    assert all(h["active"] for h in held)
    assert 20 == (await upstream.get("/_standin/stats")).json()["calls"]["create"]


async def test_a_429_storm_is_ridden_out(
    api: httpx.AsyncClient, upstream: httpx.AsyncClient
) -> None:
    """30 creates in a row answered 429: the job slows down, then completes, each row once;
    the events tell clients about the throttle."""
    await inject(upstream, "throttle", times=30)

    body = await upload_20(api)
    events = await api.get(f"/hospitals/bulk/{body['batch_id']}/events", params={"after": 0})

    assert ("completed", 0) == (body["state"], body["failed_hospitals"])
    held = await held_upstream(upstream, body["batch_id"])
    assert 20 == len({h["name"] for h in held}) == len(held)
    assert 30 == (await upstream.get("/_standin/stats")).json()["throttled"]
    assert "event: throttle.changed" in events.text


async def test_status_and_delete_end_to_end(
    api: httpx.AsyncClient, upstream: httpx.AsyncClient
) -> None:
    """Status reads the finished job; delete empties its batch upstream."""
    body = await upload_20(api)
    batch_id = body["batch_id"]

    status = (await api.get(f"/bulk/status/{batch_id}")).json()
    deleted = await api.delete(f"/hospitals/bulk/{batch_id}")
    gone = await upstream.get(f"/hospitals/batch/{batch_id}")

    assert ("completed", 20) == (status["state"], len(status["rows"]))
    assert (200, "deleted") == (deleted.status_code, deleted.json()["state"])
    assert 404 == gone.status_code
