"""Durable stores end to end (issue 6): real processes that crash, share Redis and pace together.

Every server is a uvicorn subprocess (``tests/servers.py``): the service as deployed
(``hospital_bulk_fastapi.main:app``, settings from the environment) and the stand-in
directory. A crash is ``kill -9`` of the service's process group. What the stand-in
holds at the end is the proof: each input row exactly once (by name, address and
phone), all active.

The services keep their Redis keys under a fixed namespace, so each group of services
gets a database of its own on the test Redis (``tests/stores/redis_server.py``),
emptied of the service's keys afterwards.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from websockets.asyncio.client import connect

from tests.helpers import records
from tests.servers import UvicornServer
from tests.stores.redis_server import redis_url

from .processes import (
    DIRECTORY_APP,
    SERVICE_APP,
    claimed_redis_db,
    copies_by_row,
    directory_env,
    finished,
    hospitals_upstream,
    once_each,
    poll_status,
    running,
    service_env,
    standin_client,
    standin_stats,
    status,
    upload_async,
)
from .test_end_to_end import inject

pytestmark = pytest.mark.anyio


def websocket_url(server: UvicornServer, batch_id: str) -> str:
    return f"ws://{server.host}:{server.port}/ws/progress/{batch_id}"


# -- 1. A crash on SQLite --------------------------------------------------------------


@pytest.fixture(name="slow_directory")
def fixture_slow_directory() -> Iterator[UvicornServer]:
    """A stand-in whose creates take 0.2 s, without rate limits."""
    with UvicornServer(DIRECTORY_APP, env=directory_env(latency=0.2)) as server:
        yield server


@pytest.fixture(name="sqlite_service")
def fixture_sqlite_service(
    slow_directory: UvicornServer, tmp_path: Path
) -> Iterator[UvicornServer]:
    """The service on a SQLite file of its own: unpaced, 10 creates at a time, no take-over."""
    store = f"sqlite:///{tmp_path / 'jobs.sqlite3'}"
    env = service_env(slow_directory.url, store, concurrency=10, take_over=False)
    with UvicornServer(SERVICE_APP, env=env) as server:
        yield server


async def test_a_job_killed_midway_is_interrupted_and_its_resume_creates_each_row_once(
    slow_directory: UvicornServer,
    sqlite_service: UvicornServer,
) -> None:
    """200 rows on SQLite; `kill -9` once some are created; restarted on the same file, the
    service shows the job `interrupted`. Resumed at once, it lists the batches only once
    the creates left unanswered can no longer land (their landing horizon, counted from
    each one's send time, survives the crash) and completes: the stand-in holds each row
    exactly once, all active, and nothing was sent twice."""
    rows = records(200, prefix="Crash")
    async with (
        standin_client(slow_directory.url) as upstream,
        httpx.AsyncClient(base_url=sqlite_service.url, timeout=90) as api,
    ):
        batch_id = await upload_async(api, rows)
        await poll_status(api, batch_id, lambda body: body["progress"]["created"] >= 20)
        sqlite_service.kill()
        await anyio.to_thread.run_sync(sqlite_service.start)
        interrupted = await status(api, batch_id)
        resumed = await api.post(f"/hospitals/bulk/{batch_id}/resume")
        final = await status(api, batch_id)
        held = await hospitals_upstream(upstream)
        stats = await standin_stats(upstream)

    assert "interrupted" == interrupted["state"]
    assert 0 < interrupted["progress"]["created"] < 200
    assert 0 < interrupted["progress"]["unknown"]
    assert (200, "completed", 200, 0) == (
        resumed.status_code,
        resumed.json()["state"],
        resumed.json()["processed_hospitals"],
        resumed.json()["failed_hospitals"],
    )
    assert ("completed", 200, 2) == (
        final["state"],
        final["progress"]["activated"],
        final["runs"],
    )
    assert 10 == len(final["creation_batch_ids"])
    assert once_each(rows) == dict(copies_by_row(held, final["creation_batch_ids"]))
    assert 200 == len(held)
    assert all(h["active"] for h in held)
    # The creates in flight at the crash (now `unknown`) were found by listing, not resent.
    assert 200 == stats["calls"]["create"]


async def test_a_crash_with_creates_in_flight_longer_than_any_settle_then_an_immediate_resume(
    tmp_path: Path,
) -> None:
    """The stand-in takes 8 s per create (longer than the 5 s settle window of old, which
    duplicated every row here); the service is killed with all 20 creates in flight
    and resumed at once. The resume waits until each create can no longer land (its
    horizon: the 10 s timeout + 2 s, from its own send, read back from the store), then
    lists the batch: each row exactly once upstream, all active, no create sent twice."""
    rows = records(20, prefix="Inflight")
    store = f"sqlite:///{tmp_path / 'jobs.sqlite3'}"
    env = {
        **service_env("http://unset", store, take_over=False, directory_timeout=10),
        "HOSPITAL_BULK_LANDING_MARGIN": "2",
    }
    with UvicornServer(DIRECTORY_APP, env=directory_env(latency=8.0)) as directory:
        env["HOSPITAL_API_BASE"] = directory.url
        with UvicornServer(SERVICE_APP, env=env) as service:
            async with (
                standin_client(directory.url) as upstream,
                httpx.AsyncClient(base_url=service.url, timeout=90) as api,
            ):
                batch_id = await upload_async(api, rows)
                with anyio.fail_after(10):
                    while (await standin_stats(upstream))["creates_in_flight"] < 20:  # noqa: ASYNC110
                        await anyio.sleep(0.05)
                service.kill()
                await anyio.to_thread.run_sync(service.start)
                resumed = await api.post(f"/hospitals/bulk/{batch_id}/resume")
                held = await hospitals_upstream(upstream)
                stats = await standin_stats(upstream)

    assert 200 == resumed.status_code, resumed.text
    assert ("completed", 20) == (resumed.json()["state"], resumed.json()["processed_hospitals"])
    assert once_each(rows) == dict(copies_by_row(held, [batch_id]))
    assert all(h["active"] for h in held)
    assert 20 == stats["calls"]["create"]


# -- 2. Two processes on one Redis -----------------------------------------------------


@pytest.fixture(name="shared_redis", scope="module")
def fixture_shared_redis() -> Iterator[str]:
    """A Redis database of the two services' own, cleaned afterwards."""
    with claimed_redis_db(redis_url()) as url:
        yield url


@pytest.fixture(name="pair_directory", scope="module")
def fixture_pair_directory() -> Iterator[UvicornServer]:
    """A stand-in whose creates take 0.1 s, without rate limits."""
    with UvicornServer(DIRECTORY_APP, env=directory_env(latency=0.1)) as server:
        yield server


@pytest.fixture(name="pair_processes", scope="module")
def fixture_pair_processes(
    pair_directory: UvicornServer, shared_redis: str
) -> Iterator[tuple[UvicornServer, UvicornServer]]:
    """Services A and B on the shared Redis: unpaced, 5 creates at a time, 2 s leases,
    taking over the jobs of dead processes."""
    env = service_env(pair_directory.url, shared_redis, concurrency=5, lease_ttl=2, take_over=True)
    a, b = UvicornServer(SERVICE_APP, env=env), UvicornServer(SERVICE_APP, env=env)
    with running(a, b):
        yield a, b


@pytest.fixture(name="pair")
def fixture_pair(
    pair_processes: tuple[UvicornServer, UvicornServer],
) -> tuple[UvicornServer, UvicornServer]:
    """A and B, both running (a test may have killed one)."""
    for server in pair_processes:
        if not server.alive:
            server.start()
    return pair_processes


@pytest.fixture(name="api_a")
async def fixture_api_a(
    pair: tuple[UvicornServer, UvicornServer],
) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=pair[0].url, timeout=90) as http:
        yield http


@pytest.fixture(name="api_b")
async def fixture_api_b(
    pair: tuple[UvicornServer, UvicornServer],
) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=pair[1].url, timeout=90) as http:
        yield http


@pytest.fixture(name="pair_upstream")
async def fixture_pair_upstream(
    pair_directory: UvicornServer,
) -> AsyncIterator[httpx.AsyncClient]:
    async with standin_client(pair_directory.url) as http:
        yield http


async def watch_over_websocket(server: UvicornServer, batch_id: str) -> list[Any]:
    """Every message of ``/ws/progress/{batch_id}`` until the server closes (with 1000)."""
    messages = []
    with anyio.fail_after(30):
        async with connect(websocket_url(server, batch_id)) as websocket:
            async for text in websocket:
                messages.append(json.loads(text))
            assert 1000 == websocket.close_code
    return messages


async def test_a_job_run_by_a_is_followed_on_b_event_by_event(
    pair: tuple[UvicornServer, UvicornServer],
    api_a: httpx.AsyncClient,
    pair_upstream: httpx.AsyncClient,
) -> None:
    """Uploaded to A, watched over B's WebSocket: a snapshot of the running job, then every
    event with contiguous sequence numbers from the snapshot's, the last `job.finished`,
    then `end` reflecting exactly the events sent, and close 1000."""
    batch_id = await upload_async(api_a, records(100, prefix="Watched"))
    messages = await watch_over_websocket(pair[1], batch_id)
    from_a = await status(api_a, batch_id)

    snapshot, events, end = messages[0], messages[1:-1], messages[-1]
    assert ("snapshot", batch_id) == (snapshot["type"], snapshot["batch_id"])
    assert snapshot["state"] in ("pending", "running")
    assert {"event"} == {message["type"] for message in events}
    first = snapshot["seq"] + 1
    assert list(range(first, first + len(events))) == [message["seq"] for message in events]
    assert 100 - snapshot["progress"]["created"] == sum(
        message["event"] == "row.created" for message in events
    )
    assert ("job.finished", "completed") == (events[-1]["event"], events[-1]["state"])
    assert ("end", "completed", events[-1]["seq"]) == (end["type"], end["state"], end["seq"])
    assert from_a["last_seq"] == end["seq"]


async def test_status_and_resume_answer_alike_from_either_process(
    api_a: httpx.AsyncClient, api_b: httpx.AsyncClient, pair_upstream: httpx.AsyncClient
) -> None:
    """While A runs a job, B's status sees it running and B's resume is a 409 naming the
    state, as A's is; once it has finished, both answer the same status."""
    batch_id = await upload_async(api_a, records(100, prefix="Shared"))
    await poll_status(api_b, batch_id, lambda body: body["state"] == "running")
    conflicts = [await api.post(f"/hospitals/bulk/{batch_id}/resume") for api in (api_b, api_a)]
    from_a = await finished(api_a, batch_id)
    from_b = await status(api_b, batch_id)

    assert [(409, "job_conflict", "running")] * 2 == [
        (r.status_code, r.json()["code"], r.json()["state"]) for r in conflicts
    ]
    assert ("completed", 100, 0) == (
        from_a["state"],
        from_a["processed_hospitals"],
        from_a["failed_hospitals"],
    )
    assert from_a == from_b


async def test_a_job_with_failures_on_a_is_resumed_through_b(
    api_a: httpx.AsyncClient, api_b: httpx.AsyncClient, pair_upstream: httpx.AsyncClient
) -> None:
    """Three creates rejected: A finishes `completed_with_errors`; a resume sent to B runs
    there and completes the job, which A then reports too; each row upstream once, active."""
    rows = records(60, prefix="Mended")
    for name in ("Mended 3", "Mended 27", "Mended 58"):
        await inject(pair_upstream, "reject", name=name)
    batch_id = await upload_async(api_a, rows)
    first = await finished(api_a, batch_id)
    resumed = await api_b.post(f"/hospitals/bulk/{batch_id}/resume")
    from_a = await status(api_a, batch_id)
    held = await hospitals_upstream(pair_upstream)

    assert ("completed_with_errors", 3) == (first["state"], first["failed_hospitals"])
    assert (200, "completed", 60) == (
        resumed.status_code,
        resumed.json()["state"],
        resumed.json()["processed_hospitals"],
    )
    assert ("completed", 2) == (from_a["state"], from_a["runs"])
    assert once_each(rows) == dict(copies_by_row(held, from_a["creation_batch_ids"]))
    assert all(h["active"] for h in held)
    stats = await standin_stats(pair_upstream)
    assert (3, 63) == (stats["faults"], stats["calls"]["create"])


async def test_b_takes_over_and_finishes_the_job_of_a_killed_a(
    pair: tuple[UvicornServer, UvicornServer],
    api_a: httpx.AsyncClient,
    api_b: httpx.AsyncClient,
    pair_upstream: httpx.AsyncClient,
) -> None:
    """`kill -9` of A midway: B declares the job interrupted (lease expired, or A's pid
    gone), resumes it by itself and completes it; each row upstream once, all active, and
    the creates A left in flight were found upstream, not sent again."""
    rows = records(100, prefix="Orphan")
    batch_id = await upload_async(api_a, rows)
    midway = await poll_status(api_b, batch_id, lambda body: body["progress"]["created"] >= 20)
    pair[0].kill()
    final = await finished(api_b, batch_id)
    held = await hospitals_upstream(pair_upstream)
    stats = await standin_stats(pair_upstream)

    assert "running" == midway["state"]
    assert ("completed", 100, 2) == (final["state"], final["progress"]["activated"], final["runs"])
    assert once_each(rows) == dict(copies_by_row(held, final["creation_batch_ids"]))
    assert 100 == len(held)
    assert all(h["active"] for h in held)
    assert 100 == stats["calls"]["create"]


# -- 3. Pacing shared through Redis ------------------------------------------------------


@pytest.fixture(name="limited_directory")
def fixture_limited_directory() -> Iterator[UvicornServer]:
    """A stand-in allowing 40 creates per 5 s (all our processes share one address).

    It keeps idle connections open 30 s: with uvicorn's 5 s, the services' pooled
    connections, idle for about one window (5.1 s) between bursts, are closed by the
    server just as the client reuses them, and the creates on them are lost (found and
    sent again later: that is exactly-once's business, not pacing's).
    """
    env = directory_env(latency=0.05, create_limit="40/5", other_limit="50/60")
    args = ["--timeout-keep-alive", "30"]
    with UvicornServer(DIRECTORY_APP, env=env, args=args) as server:
        yield server


@pytest.fixture(name="paced_pair")
def fixture_paced_pair(limited_directory: UvicornServer) -> Iterator[tuple[UvicornServer, ...]]:
    """Two services on a Redis database of their own, each paced to 40 creates per 5 s."""
    with claimed_redis_db(redis_url()) as store:
        env = service_env(
            limited_directory.url,
            store,
            rate_limit=40,
            rate_window=5,
            concurrency=40,
            take_over=True,
        )
        a, b = UvicornServer(SERVICE_APP, env=env), UvicornServer(SERVICE_APP, env=env)
        with running(a, b):
            yield a, b


async def test_two_processes_pace_together_and_are_never_throttled(
    limited_directory: UvicornServer,
    paced_pair: tuple[UvicornServer, ...],
) -> None:
    """Two services, a 100-row job each at the same moment, a directory allowing 40 creates
    per 5 s: the shared gate keeps both under the limit together. Both jobs complete, and
    the directory never answered 429."""
    jobs: dict[str, str] = {}
    async with (
        standin_client(limited_directory.url) as upstream,
        httpx.AsyncClient(base_url=paced_pair[0].url, timeout=90) as api_a,
        httpx.AsyncClient(base_url=paced_pair[1].url, timeout=90) as api_b,
    ):

        async def submit(api: httpx.AsyncClient, prefix: str) -> None:
            jobs[prefix] = await upload_async(api, records(100, prefix=prefix))

        async with anyio.create_task_group() as group:
            group.start_soon(submit, api_a, "North")
            group.start_soon(submit, api_b, "South")
        # Polled gently: status answers cost the services CPU that pacing needs on time.
        north = await finished(api_a, jobs["North"], seconds=60, interval=0.5)
        south = await finished(api_b, jobs["South"], seconds=60, interval=0.5)
        stats = await standin_stats(upstream)

    assert ("completed", "completed") == (north["state"], south["state"])
    assert 0 == stats["throttled"]
