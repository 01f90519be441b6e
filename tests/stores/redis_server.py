"""Which Redis the tests use, and scratch stores on it that clean up after themselves.

In order: ``$REDIS_URL``; else the machine's Redis on 127.0.0.1:6379, database 15, if
it answers; else a private ``redis-server`` on a free port, started once and stopped
when the tests end; else the Redis tests are skipped — or fail, when
``HOSPITAL_BULK_REQUIRE_REDIS=1`` (CI sets it, so that a missing Redis cannot pass
as green). On a shared server the tests touch only keys of their own namespaces.
"""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import socket
import subprocess
import time
import uuid

import pytest
import redis

from hospital_bulk.stores.redis import DEFAULT_RETENTION, RedisStore

#: The machine's Redis, in a database of its own so that a glance at db 0 shows no test keys.
MACHINE_URL = "redis://127.0.0.1:6379/15"


def redis_url() -> str:
    """The URL of the Redis to test against; skips (or fails) the test when there is none."""
    url, problem = _find_server()
    if url is None:
        if os.environ.get("HOSPITAL_BULK_REQUIRE_REDIS") == "1":
            pytest.fail(f"HOSPITAL_BULK_REQUIRE_REDIS=1 but {problem}")
        pytest.skip(problem)
    return url


def new_namespace() -> str:
    return f"hb-test-{uuid.uuid4().hex[:12]}"


class ScratchRedisStore(RedisStore):
    """A RedisStore on its own namespace whose ``aclose`` first deletes that namespace."""

    async def aclose(self) -> None:
        try:
            keys = [key async for key in self.client.scan_iter(match=f"{self.namespace}:*")]
            if keys:
                await self.client.delete(*keys)
        finally:
            await super().aclose()


async def scratch_store(
    namespace: str | None = None, *, retention: float = DEFAULT_RETENTION
) -> ScratchRedisStore:
    """A store on the test Redis; stores opened with the same ``namespace`` share jobs."""
    return await ScratchRedisStore.open(
        redis_url(), namespace=namespace or new_namespace(), retention=retention
    )


@functools.cache
def _find_server() -> tuple[str | None, str]:
    """A URL, or None and why there is none; decided once per test run."""
    if url := os.environ.get("REDIS_URL"):
        return url, ""
    if _answers(MACHINE_URL):
        return MACHINE_URL, ""
    binary = shutil.which("redis-server")
    if binary is None:
        return None, f"no Redis: REDIS_URL is unset, {MACHINE_URL} does not answer, no redis-server"
    return _start_private_server(binary)


def _answers(url: str) -> bool:
    client = redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=2)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


def _start_private_server(binary: str) -> tuple[str | None, str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [binary, "--bind", "127.0.0.1", "--port", str(port)]
    command += ["--save", "", "--appendonly", "no"]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    atexit.register(_stop, server)
    url = f"redis://127.0.0.1:{port}/0"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if _answers(url):
            return url, ""
        if server.poll() is not None:
            break
        time.sleep(0.05)
    return None, f"a private redis-server on port {port} did not answer"


def _stop(server: subprocess.Popen[bytes]) -> None:
    server.terminate()
    try:
        server.wait(timeout=5)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()
