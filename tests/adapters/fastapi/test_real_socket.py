"""The WebSocket over a real socket: uvicorn in a thread, the `websockets` library as client."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect

from hospital_bulk import BulkProcessor
from hospital_bulk.testing import FakeDirectory
from hospital_bulk_fastapi import ServiceSettings, create_app
from tests.helpers import UNPACED, csv_bytes, records
from tests.servers import serve_in_thread

pytestmark = pytest.mark.anyio


@pytest.fixture(name="url")
def fixture_url(settings: ServiceSettings) -> Iterator[str]:
    """The service on a loopback port; creates take 0.2 s, so a 60-row job runs ~0.6 s."""
    processor = BulkProcessor(FakeDirectory(latency=0.2), settings=UNPACED)
    with serve_in_thread(create_app(settings, processor=processor)) as url:
        yield url


async def read_until_closed(url: str) -> tuple[list[Any], int | None]:
    async with connect(url) as ws:
        messages = [json.loads(message) async for message in ws]
        return messages, ws.close_code


async def test_a_reconnecting_client_misses_nothing(url: str) -> None:
    """A client reads a few events and leaves; reconnecting with `?after=` it gets the rest.

    Together its two sessions hold exactly the events a third client replays from 0:
    contiguous sequence numbers ending with `job.finished`, and the close code is 1000.
    """
    async with httpx.AsyncClient(base_url=url) as http:
        accepted = await http.post(
            "/hospitals/bulk",
            files={"file": ("h.csv", csv_bytes(records(60)), "text/csv")},
            headers={"Prefer": "respond-async"},
        )
    batch_id = accepted.json()["batch_id"]
    ws_url = url.replace("http://", "ws://") + f"/ws/progress/{batch_id}"

    # An unbounded queue: a full one stops the client reading, its own close reply
    # included, and its goodbye would wait out the 10 s close timeout.
    async with connect(ws_url, max_queue=None) as ws:
        snapshot = json.loads(await ws.recv())
        first = [json.loads(await ws.recv()) for _ in range(5)]
    rest, code = await read_until_closed(f"{ws_url}?after={first[-1]['seq']}")
    replay, _ = await read_until_closed(f"{ws_url}?after=0")

    assert "snapshot" == snapshot["type"]
    seen = [event["seq"] for event in first + rest[1:-1]]
    assert list(range(snapshot["seq"] + 1, snapshot["seq"] + 1 + len(seen))) == seen
    assert "job.finished" == rest[-2]["event"]
    assert ("end", "completed") == (rest[-1]["type"], rest[-1]["state"])
    assert 1000 == code
    everything = [event["seq"] for event in replay[1:-1]]
    assert everything[snapshot["seq"] :] == seen
    assert list(range(1, len(everything) + 1)) == everything
    assert 60 == sum(event["event"] == "row.created" for event in replay[1:-1])
