"""A stopping service over ASGI: refused uploads, closed live feeds, interrupted jobs.

``begin_shutdown(app)`` is what ``hospital-bulk serve`` calls when uvicorn is asked to
stop; the real signal is in ``test_serve_shutdown.py``.
"""

from __future__ import annotations

from contextlib import aclosing
from typing import Any

import anyio
import attrs
import httpx
import pytest
from fastapi import FastAPI
from httpx_ws.transport import ASGIWebSocketTransport

from hospital_bulk import BulkProcessor, JobState
from hospital_bulk.testing import FakeDirectory
from hospital_bulk_fastapi import ServiceSettings, begin_shutdown, create_app
from tests.helpers import UNPACED, csv_bytes, records

from .support import BASE_URL, serve, upload
from .test_live import parse_sse, receive_all

pytestmark = pytest.mark.anyio


@pytest.fixture(name="slow_app")
def fixture_slow_app(settings: ServiceSettings) -> FastAPI:
    """The service on a directory whose creates take 0.3 s, 2 at a time."""
    slow = FakeDirectory(latency=0.3)
    processor = BulkProcessor(slow, settings=attrs.evolve(UNPACED, concurrency=2))
    return create_app(settings, processor=processor)


async def running_job(client: httpx.AsyncClient, count: int = 20) -> str:
    accepted = await client.post(
        "/hospitals/bulk", files=upload(csv_bytes(records(count))), params={"mode": "async"}
    )
    batch_id: str = accepted.json()["batch_id"]
    return batch_id


async def test_a_stopping_service_refuses_uploads_and_resumes_with_503(slow_app: FastAPI) -> None:
    """Once stopping began, an upload and a resume are 503 `stopping` with Retry-After;
    reading still works. The running job ends `interrupted`."""
    async with serve(slow_app) as client:
        batch_id = await running_job(client)
        await begin_shutdown(slow_app, linger=0)
        refused = await client.post("/hospitals/bulk", files=upload(csv_bytes(records(2))))
        resume = await client.post(f"/hospitals/bulk/{batch_id}/resume")
        status = await client.get(f"/bulk/status/{batch_id}")
        processor: BulkProcessor = slow_app.state.hospital_bulk.processor

    assert (503, "stopping") == (refused.status_code, refused.json()["code"])
    assert "shutting down" in refused.json()["detail"]
    assert 1 <= int(refused.headers["retry-after"])
    assert (503, "stopping") == (resume.status_code, resume.json()["code"])
    assert 200 == status.status_code
    assert JobState.INTERRUPTED == (await processor.get_job(batch_id)).state


async def test_stopping_closes_a_websocket_with_a_message_and_1001(slow_app: FastAPI) -> None:
    """A WebSocket following a running job gets `service.stopping` naming the last
    sequence number it was sent, then close code 1001; connecting while stopping gets
    the same at once."""
    async with slow_app.router.lifespan_context(slow_app):
        transport = ASGIWebSocketTransport(app=slow_app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
            batch_id = await running_job(client)
            result: list[tuple[list[Any], int | None]] = []

            async def watch() -> None:
                result.append(await receive_all(client, f"/ws/progress/{batch_id}"))

            with anyio.fail_after(10):
                async with anyio.create_task_group() as group:
                    group.start_soon(watch)
                    await anyio.sleep(0.5)
                    await begin_shutdown(slow_app)
                late = await receive_all(client, f"/ws/progress/{batch_id}")

    messages, code = result[0]
    sent = [message["seq"] for message in messages if message["type"] in ("snapshot", "event")]
    assert "snapshot" == messages[0]["type"]
    assert ("service.stopping", batch_id, sent[-1]) == (
        messages[-1]["type"],
        messages[-1]["batch_id"],
        messages[-1]["seq"],
    )
    assert 1001 == code
    assert (["service.stopping"], 1001) == ([m["type"] for m in late[0]], late[1])


async def test_stopping_ends_an_event_stream_with_a_last_event(slow_app: FastAPI) -> None:
    """An SSE stream following a running job ends with a `service.stopping` event naming
    the last event id sent."""
    async with serve(slow_app) as client:
        batch_id = await running_job(client)

        async def stop_soon() -> None:
            await anyio.sleep(0.5)
            await begin_shutdown(slow_app)

        with anyio.fail_after(10):
            async with anyio.create_task_group() as group:
                group.start_soon(stop_soon)
                response = await client.get(f"/hospitals/bulk/{batch_id}/events")

    events = parse_sse(response.text)
    ids = [int(event["id"]) for event in events if "id" in event]
    assert "snapshot" == events[0]["event"]
    assert ("service.stopping", batch_id) == (events[-1]["event"], events[-1]["data"]["batch_id"])
    assert (ids[-1] if ids else events[0]["data"]["seq"]) == events[-1]["data"]["seq"]


async def test_leaving_the_lifespan_stops_jobs_gracefully(settings: ServiceSettings) -> None:
    """Without `begin_shutdown` (a server that says nothing before closing), the
    lifespan's end stops the jobs the same way: creates in flight finish, nothing in
    doubt, the job `interrupted`."""
    slow = FakeDirectory(latency=0.3)
    processor = BulkProcessor(slow, settings=UNPACED)
    async with serve(create_app(settings, processor=processor)) as client:
        batch_id = await running_job(client)
        async with aclosing(processor.watch(batch_id)) as events:  # type: ignore[type-var]
            async for event in events:
                if event.progress.created >= 1:
                    break

    job = await processor.get_job(batch_id)
    assert (JobState.INTERRUPTED, 0) == (job.state, job.progress.unknown)
    assert len(slow.hospitals) == job.progress.created
