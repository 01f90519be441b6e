"""Helpers of the tests (and benchmarks) that run the service and the stand-in as processes.

Settings spelled out in full (the developer's environment must not leak in), a Redis
database of one's own for services that cannot be given a namespace, and the bounded
polling every end-to-end check needs. Nothing here imports pytest: the benchmarks use it.
"""

from __future__ import annotations

import collections
import uuid
from collections.abc import AsyncIterator, Callable, Collection, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, contextmanager
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import anyio
import httpx
import redis

from hospital_bulk import HospitalRecord

# Re-exported: the apps are named once, by the first end-to-end tests.
from tests.adapters.fastapi.test_end_to_end import DIRECTORY_APP as DIRECTORY_APP
from tests.adapters.fastapi.test_end_to_end import SERVICE_APP as SERVICE_APP
from tests.helpers import csv_bytes
from tests.servers import UvicornServer

#: States a job leaves only when someone acts (resume, delete).
FINISHED = frozenset({"completed", "completed_with_errors", "failed", "cancelled"})
#: The service's keys in Redis (its store uses the default namespace).
SERVICE_NAMESPACE = "hospital-bulk"
#: Marks a Redis database as taken by one test run (or benchmark) until it is done.
CLAIM_KEY = "hospital-bulk-tests:claimed"

Key = tuple[str, str, str | None]


def directory_env(
    *, latency: float, create_limit: str = "0", other_limit: str = "0"
) -> dict[str, str]:
    """The stand-in's variables, every one of them."""
    return {
        "HOSPITAL_DIRECTORY_LATENCY": str(latency),
        "HOSPITAL_DIRECTORY_CREATE_LIMIT": create_limit,
        "HOSPITAL_DIRECTORY_OTHER_LIMIT": other_limit,
        "HOSPITAL_DIRECTORY_ADMIN": "1",
    }


def service_env(
    api_base: str,
    store: str,
    *,
    rate_limit: int = 0,
    rate_window: float = 60,
    concurrency: int = 20,
    lease_ttl: float = 30,
    directory_timeout: float = 3,
    take_over: bool,
    resume_on_start: bool = False,
    graceful_timeout: float = 30,
) -> dict[str, str]:
    """The service's variables, every one of them. The directory's timeout is short,
    so that resumes reach the landing horizon of unanswered creates soon. Resuming at
    start-up is off unless asked: tests that restart a service look at what the
    previous one left."""
    return {
        "HOSPITAL_API_BASE": api_base,
        "HOSPITAL_BULK_STORE": store,
        "HOSPITAL_BULK_RATE_LIMIT": str(rate_limit),
        "HOSPITAL_BULK_RATE_WINDOW": str(rate_window),
        "HOSPITAL_BULK_CONCURRENCY": str(concurrency),
        "HOSPITAL_BULK_MAX_ROWS": "10000",
        "HOSPITAL_BULK_MAX_UPLOAD_BYTES": "1048576",
        "HOSPITAL_BULK_SYNC_TIMEOUT": "60",
        "HOSPITAL_BULK_EMBEDDED_LATENCY": "0.5",
        "HOSPITAL_BULK_LEASE_TTL": str(lease_ttl),
        "HOSPITAL_BULK_TAKE_OVER": "true" if take_over else "false",
        "HOSPITAL_BULK_RESUME_ON_START": "true" if resume_on_start else "false",
        "HOSPITAL_BULK_GRACEFUL_TIMEOUT": str(graceful_timeout),
        "HOSPITAL_BULK_DIRECTORY_TIMEOUT": str(directory_timeout),
        "HOSPITAL_BULK_LANDING_MARGIN": "1",
        "HOSPITAL_BULK_OUTAGE_DEADLINE": "600",
    }


# -- a Redis database of one's own ---------------------------------------------------


def with_db(url: str, db: int) -> str:
    """``url`` pointing at database ``db`` (``/db`` in the path, ``?db=`` for sockets)."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        query = dict(parse_qsl(parts.query))
        query["db"] = str(db)
        return urlunsplit(parts._replace(query=urlencode(query)))
    return urlunsplit(parts._replace(path=f"/{db}"))


@contextmanager
def claimed_redis_db(base_url: str, databases: Iterable[int] = range(1, 15)) -> Iterator[str]:
    """The URL of an empty database of ``base_url``'s Redis, claimed until the block ends.

    The service keeps its keys under a fixed namespace, so services under test get a
    database of their own: the first empty one, marked with ``CLAIM_KEY`` so that a
    concurrent run passes it by. Afterwards the service's keys and the mark are deleted
    (only those: a database is never flushed).
    """
    token = uuid.uuid4().hex
    for db in databases:
        url = with_db(base_url, db)
        client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=10)
        try:
            if client.dbsize() == 0 and client.set(CLAIM_KEY, token, nx=True, ex=3600):
                if client.dbsize() == 1:
                    break
                _release(client, token)  # someone else started writing here meanwhile
        except BaseException:
            client.close()
            raise
        client.close()
    else:
        raise RuntimeError(f"no empty database among {list(databases)} at {base_url}")
    try:
        yield url
    finally:
        try:
            keys = list(client.scan_iter(match=f"{SERVICE_NAMESPACE}:*", count=1000))
            for start in range(0, len(keys), 500):
                client.delete(*keys[start : start + 500])
            _release(client, token)
        finally:
            client.close()


def _release(client: redis.Redis, token: str) -> None:
    if client.get(CLAIM_KEY) == token.encode():
        client.delete(CLAIM_KEY)


# -- processes -----------------------------------------------------------------------


@contextmanager
def running(*servers: UvicornServer) -> Iterator[None]:
    """Start ``servers`` side by side (each start waits for its port); close them all after.

    Each uvicorn spends a second or so importing: started together, they share that.
    """
    try:
        with ThreadPoolExecutor(len(servers)) as pool:
            for started in [pool.submit(server.start) for server in servers]:
                started.result()
        yield
    finally:
        for server in servers:
            server.close()


# -- talking to the service and the stand-in -----------------------------------------


async def upload_async(
    api: httpx.AsyncClient, rows: Iterable[HospitalRecord], name: str = "hospitals.csv"
) -> str:
    """Upload ``rows`` without waiting for the job (202); its batch_id."""
    files = {"file": (name, csv_bytes(list(rows)), "text/csv")}
    response = await api.post("/hospitals/bulk", params={"mode": "async"}, files=files)
    assert 202 == response.status_code, response.text
    batch_id: str = response.json()["batch_id"]
    return batch_id


async def status(api: httpx.AsyncClient, batch_id: str) -> Any:
    response = await api.get(f"/bulk/status/{batch_id}")
    assert 200 == response.status_code, response.text
    return response.json()


async def poll_status(
    api: httpx.AsyncClient,
    batch_id: str,
    until: Callable[[Any], bool],
    *,
    seconds: float = 30.0,
    interval: float = 0.05,
) -> Any:
    """Poll the job's status until ``until(body)``; the body. Fails after ``seconds``."""
    with anyio.fail_after(seconds):
        while True:
            body = await status(api, batch_id)
            if until(body):
                return body
            await anyio.sleep(interval)


async def finished(
    api: httpx.AsyncClient, batch_id: str, *, seconds: float = 30.0, interval: float = 0.05
) -> Any:
    """The job's status once it has finished (any finished state), within ``seconds``."""
    return await poll_status(
        api, batch_id, lambda body: body["state"] in FINISHED, seconds=seconds, interval=interval
    )


@asynccontextmanager
async def standin_client(url: str) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client of the stand-in at ``url``, reset first: no hospitals, faults, stats."""
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        assert 204 == (await http.post("/_standin/reset")).status_code
        yield http


async def standin_stats(upstream: httpx.AsyncClient) -> Any:
    response = await upstream.get("/_standin/stats")
    assert 200 == response.status_code, response.text
    return response.json()


async def hospitals_upstream(upstream: httpx.AsyncClient) -> list[dict[str, Any]]:
    """Every hospital the stand-in holds (``GET /hospitals/``)."""
    response = await upstream.get("/hospitals/")
    assert 200 == response.status_code, response.text
    hospitals: list[dict[str, Any]] = response.json()
    return hospitals


def copies_by_row(
    hospitals: Iterable[Mapping[str, Any]], batch_ids: Collection[str]
) -> collections.Counter[Key]:
    """How many hospitals of these upstream batches there are per (name, address, phone)."""
    return collections.Counter(
        (h["name"], h["address"], h["phone"])
        for h in hospitals
        if h["creation_batch_id"] in batch_ids
    )


def once_each(rows: Iterable[HospitalRecord]) -> dict[Key, int]:
    """What ``copies_by_row`` says when every row is upstream exactly once."""
    return {(r.name, r.address, r.phone): 1 for r in rows}
