"""The directory refuses connections for 20 s in the middle of a job, over real sockets.

The service reaches the stand-in through a TCP relay that the test switches off: while
off, connections are refused and those open are cut, as when the directory's host goes
away. The job shows ``waiting_for_directory`` within 5 s, goes on by itself once the
directory is back, and completes with no failed row and no duplicate.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterator
from typing import Any

import anyio
import anyio.abc
import httpx
import pytest

from hospital_bulk_fastapi import ServiceSettings, create_app
from tests.helpers import csv_bytes, records
from tests.servers import UvicornServer, free_port

from .support import serve, upload

pytestmark = pytest.mark.anyio

OUTAGE = 20.0


class Relay:
    """A TCP relay to ``target`` that can be switched off (connections refused, open
    ones cut) and on again, on the same port."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._scope: anyio.CancelScope | None = None

    async def on(self, group: anyio.abc.TaskGroup) -> None:
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=self.port)
        self._scope = anyio.CancelScope()

        async def serve_all() -> None:
            assert self._scope is not None
            with self._scope:
                async with listener:
                    await listener.serve(self._relay)

        group.start_soon(serve_all)

    def off(self) -> None:
        """Close the listener and every relayed connection."""
        assert self._scope is not None
        self._scope.cancel()

    async def _relay(self, client: anyio.abc.SocketStream) -> None:
        async with client, await anyio.connect_tcp("127.0.0.1", self.target_port) as upstream:

            async def pump(source: anyio.abc.SocketStream, sink: anyio.abc.SocketStream) -> None:
                try:
                    async for chunk in source:
                        await sink.send(chunk)
                except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                    pass
                finally:
                    await sink.send_eof()

            async with anyio.create_task_group() as group:
                group.start_soon(pump, client, upstream)
                await pump(upstream, client)


@pytest.fixture(name="standin")
def fixture_standin() -> Iterator[UvicornServer]:
    env = {
        "HOSPITAL_DIRECTORY_LATENCY": "0.2",
        "HOSPITAL_DIRECTORY_CREATE_LIMIT": "0",
        "HOSPITAL_DIRECTORY_OTHER_LIMIT": "0",
    }
    with UvicornServer("hospital_bulk_standin.app:app", env=env) as server:
        yield server


async def test_a_20_s_outage_is_waited_out_and_the_job_completes(
    standin: UvicornServer,
) -> None:
    rows = records(60, prefix="Outage")
    relay = Relay(standin.port)
    settings = ServiceSettings(
        api_base=relay.url,
        store="memory://",
        rate_limit=0,
        concurrency=5,
        sync_timeout=0,
        directory_timeout=3,
        landing_margin=1,
        outage_deadline=120,
    )
    seen: list[str] = []
    async with anyio.create_task_group() as group:
        await relay.on(group)
        async with serve(create_app(settings)) as api:
            answer = await api.post("/hospitals/bulk", files=upload(csv_bytes(rows)))
            assert 202 == answer.status_code, answer.text
            batch_id = answer.json()["batch_id"]

            async def state() -> dict[str, Any]:
                body: dict[str, Any] = (await api.get(f"/bulk/status/{batch_id}")).json()
                seen.append(str(body["state"]))
                return body

            async def until(done: Callable[[dict[str, Any]], bool], within: float) -> Any:
                """The job's status once ``done`` holds, polling, within ``within`` s."""
                with anyio.fail_after(within):
                    while not done(body := await state()):  # noqa: ASYNC110 (a client polls)
                        await anyio.sleep(0.1)
                return body

            await until(lambda body: body["progress"]["created"] >= 15, 30)
            relay.off()
            off_at = anyio.current_time()
            await until(lambda body: body["state"] == "waiting_for_directory", 5)
            print(f"waiting_for_directory after {anyio.current_time() - off_at:.1f} s")
            await anyio.sleep(off_at + OUTAGE - anyio.current_time())
            assert "waiting_for_directory" == (await state())["state"]
            await relay.on(group)
            final = await until(lambda body: body["state"] in ("completed", "failed"), 60)
        group.cancel_scope.cancel()

    async with httpx.AsyncClient(base_url=standin.url, timeout=10) as directory:
        held = (await directory.get("/hospitals/")).json()
    assert "completed" == final["state"]
    assert 0 == final["progress"]["failed"]
    assert collections.Counter(r.name for r in rows) == collections.Counter(h["name"] for h in held)
    assert all(h["active"] for h in held)
