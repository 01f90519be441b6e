"""Live progress over ASGI: Server-Sent Events and the WebSocket."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx
import pytest
from fastapi import FastAPI
from httpx_ws import WebSocketDisconnect, aconnect_ws
from httpx_ws.transport import ASGIWebSocketTransport

from hospital_bulk import BulkProcessor, Event, MemoryStore, StoreError
from hospital_bulk.testing import FakeDirectory
from hospital_bulk_fastapi import ServiceSettings, create_app
from tests.helpers import UNPACED, csv_bytes, records

from .support import BASE_URL, serve, upload

pytestmark = pytest.mark.anyio


def parse_sse(text: str) -> list[dict[str, Any]]:
    """Server-Sent Events as dicts of their fields (``data`` parsed as JSON)."""
    events = []
    for block in text.split("\n\n"):
        fields: dict[str, Any] = {}
        for line in block.splitlines():
            if line.startswith(":"):
                continue
            name, _, value = line.partition(": ")
            fields[name] = json.loads(value) if name == "data" else value
        if fields:
            events.append(fields)
    return events


async def finished_job(client: httpx.AsyncClient, count: int = 2) -> str:
    response = await client.post("/hospitals/bulk", files=upload(csv_bytes(records(count))))
    batch_id: str = response.json()["batch_id"]
    return batch_id


async def test_sse_replays_every_event_then_ends(client: httpx.AsyncClient) -> None:
    """`?after=0`: a snapshot, events 1..N with `id:` = sequence, then `end`."""
    batch_id = await finished_job(client)

    response = await client.get(f"/hospitals/bulk/{batch_id}/events", params={"after": 0})

    assert 200 == response.status_code
    assert response.headers["content-type"].startswith("text/event-stream")
    events = parse_sse(response.text)
    snapshot, *changes, end = events
    assert ("snapshot", "completed", "2000") == (
        snapshot["event"],
        snapshot["data"]["state"],
        snapshot["retry"],
    )
    last = snapshot["data"]["seq"]
    assert [str(n) for n in range(1, last + 1)] == [change["id"] for change in changes]
    assert [change["event"] for change in changes] == [c["data"]["event"] for c in changes]
    assert "job.accepted" == changes[0]["event"]
    assert "job.finished" == changes[-1]["event"]
    assert {"row.created", "batch.activated"} <= {change["event"] for change in changes}
    assert ("end", "completed", last) == (end["event"], end["data"]["state"], end["data"]["seq"])
    assert "id" not in end


async def test_sse_resumes_after_last_event_id(client: httpx.AsyncClient) -> None:
    """`Last-Event-ID: 3` (sent by EventSource on reconnection) wins over `?after`."""
    batch_id = await finished_job(client)

    response = await client.get(
        f"/hospitals/bulk/{batch_id}/events", params={"after": 0}, headers={"Last-Event-ID": "3"}
    )

    ids = [event["id"] for event in parse_sse(response.text) if "id" in event]
    assert "4" == ids[0]


async def test_sse_on_a_settled_job_with_nothing_new_is_204(client: httpx.AsyncClient) -> None:
    """Nothing after the cursor of a settled job: 204, which stops EventSource reconnecting."""
    batch_id = await finished_job(client)
    last = (await client.get(f"/bulk/status/{batch_id}")).json()["last_seq"]

    response = await client.get(
        f"/hospitals/bulk/{batch_id}/events", headers={"Last-Event-ID": str(last)}
    )

    assert (204, b"") == (response.status_code, response.content)


async def test_sse_without_a_cursor_starts_from_the_snapshot(client: httpx.AsyncClient) -> None:
    """No cursor on a settled job: the snapshot and `end`, no replay."""
    batch_id = await finished_job(client)

    response = await client.get(f"/hospitals/bulk/{batch_id}/events")

    assert ["snapshot", "end"] == [event["event"] for event in parse_sse(response.text)]


@pytest.mark.parametrize(
    ("params", "headers"),
    [({"after": "x"}, {}), ({"after": -1}, {}), ({}, {"Last-Event-ID": "seven"})],
)
async def test_sse_bad_cursor_is_422(
    client: httpx.AsyncClient, params: dict[str, object], headers: dict[str, str]
) -> None:
    """A cursor that is not a non-negative integer: 422."""
    batch_id = await finished_job(client)

    response = await client.get(
        f"/hospitals/bulk/{batch_id}/events",
        params=params,  # type: ignore[arg-type]
        headers=headers,
    )

    assert (422, "invalid_request") == (response.status_code, response.json()["code"])


async def test_sse_follows_a_running_job_live(settings: ServiceSettings) -> None:
    """Connected while the job runs: contiguous live events up to `job.finished`."""
    app = create_app(
        settings, processor=BulkProcessor(FakeDirectory(latency=0.05), settings=UNPACED)
    )
    async with serve(app) as client:
        accepted = await client.post(
            "/hospitals/bulk",
            files=upload(csv_bytes(records(5))),
            headers={"Prefer": "respond-async"},
        )
        batch_id = accepted.json()["batch_id"]

        response = await client.get(f"/hospitals/bulk/{batch_id}/events", params={"after": 0})

    changes = [event for event in parse_sse(response.text) if "id" in event]
    assert list(range(1, len(changes) + 1)) == [int(change["id"]) for change in changes]
    assert "job.finished" == changes[-1]["event"]
    assert 5 == sum(change["event"] == "row.created" for change in changes)


# -- WebSocket -----------------------------------------------------------------------


@pytest.fixture(name="ws_client")
async def fixture_ws_client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """A client that speaks WebSocket to the app over ASGI, inside its lifespan."""
    transport = ASGIWebSocketTransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client,
    ):
        yield client


async def receive_all(client: httpx.AsyncClient, url: str) -> tuple[list[Any], int | None]:
    """Every message of a WebSocket, and its close code."""
    messages = []
    async with aconnect_ws(url, client) as ws:
        try:
            while True:
                messages.append(json.loads(await ws.receive_text()))
        except WebSocketDisconnect as closed:
            return messages, closed.code
    return messages, None  # pragma: no cover - the loop only ends by a close


async def test_websocket_sends_snapshot_then_events_then_closes_1000(
    ws_client: httpx.AsyncClient,
) -> None:
    """`?after=0`: snapshot, every event in order without gaps, `end`, closed with 1000."""
    batch_id = await finished_job(ws_client)

    messages, code = await receive_all(ws_client, f"/ws/progress/{batch_id}?after=0")

    snapshot, *events, end = messages
    assert ("snapshot", batch_id, "completed") == (
        snapshot["type"],
        snapshot["batch_id"],
        snapshot["state"],
    )
    assert list(range(1, snapshot["seq"] + 1)) == [event["seq"] for event in events]
    assert {"event"} == {event["type"] for event in events}
    assert "job.finished" == events[-1]["event"]
    assert ("end", "completed", snapshot["seq"]) == (end["type"], end["state"], end["seq"])
    assert 1000 == code


async def test_websocket_many_clients_see_the_same_live_events(app: FastAPI) -> None:
    """Five clients connected while a job runs each get the same contiguous events."""
    async with app.router.lifespan_context(app):
        transport = ASGIWebSocketTransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
            content = csv_bytes(records(30))
            accepted = await client.post(
                "/hospitals/bulk", files=upload(content), params={"mode": "async"}
            )
            batch_id = accepted.json()["batch_id"]
            seen: list[list[int]] = []

            async def watch() -> None:
                messages, code = await receive_all(client, f"/ws/progress/{batch_id}?after=0")
                assert 1000 == code
                seen.append([m["seq"] for m in messages if m["type"] == "event"])
                assert "end" == messages[-1]["type"]

            with anyio.fail_after(10):
                async with anyio.create_task_group() as group:
                    for _ in range(5):
                        group.start_soon(watch)

    assert 5 == len(seen)
    assert 1 == len({tuple(s) for s in seen})
    assert list(range(1, len(seen[0]) + 1)) == seen[0]


async def test_websocket_unknown_job_gets_an_error_and_4404(ws_client: httpx.AsyncClient) -> None:
    """An unknown id: one `error` message, then close code 4404."""
    messages, code = await receive_all(ws_client, "/ws/progress/nope")

    assert [
        {"type": "error", "code": "job_not_found", "detail": "no bulk batch with id 'nope'"}
    ] == messages
    assert 4404 == code


@pytest.mark.parametrize("after", ["x", "-1", "1.5", "%C3%BC"])
async def test_websocket_bad_after_gets_4400(ws_client: httpx.AsyncClient, after: str) -> None:
    """`after` must be a non-negative integer: otherwise an error message and 4400."""
    batch_id = await finished_job(ws_client)

    messages, code = await receive_all(ws_client, f"/ws/progress/{batch_id}?after={after}")

    assert ["invalid_request"] == [message["code"] for message in messages]
    assert 4400 == code


class FailingEvents(MemoryStore):
    """A store that holds jobs but cannot read their events."""

    async def read_events(self, job_id: str, after: int = 0, *, wait: float = 0.0) -> list[Event]:
        raise StoreError("events table gone")


async def test_a_store_failure_ends_the_feeds_with_an_error(settings: ServiceSettings) -> None:
    """The store fails mid-feed: the WebSocket sends an `error` and closes 1011, the SSE
    stream sends an `error` event and ends."""
    store = FailingEvents()
    processor = BulkProcessor(FakeDirectory(), store, UNPACED)
    job = await processor.submit(csv_bytes(records(1)))
    app = create_app(settings, processor=processor)
    transport = ASGIWebSocketTransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client,
    ):
        messages, code = await receive_all(client, f"/ws/progress/{job.id}?after=0")
        response = await client.get(f"/hospitals/bulk/{job.id}/events", params={"after": 0})

    assert (["snapshot", "error"], 1011) == ([m["type"] for m in messages], code)
    assert "store_unavailable" == messages[-1]["code"]
    events = parse_sse(response.text)
    assert ["snapshot", "error"] == [event["event"] for event in events]
