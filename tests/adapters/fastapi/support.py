"""Helpers of the service tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx
from fastapi import FastAPI

BASE_URL = "http://service.test"
#: States after which a job does nothing more by itself.
SETTLED = {"completed", "completed_with_errors", "failed", "cancelled", "interrupted", "deleted"}


@asynccontextmanager
async def serve(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client of ``app`` inside its lifespan (ASGITransport does not run it)."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
            yield client


def upload(content: bytes, name: str = "hospitals.csv") -> dict[str, tuple[str, bytes, str]]:
    """The multipart ``files`` of an upload."""
    return {"file": (name, content, "text/csv")}


async def settled(client: httpx.AsyncClient, batch_id: str) -> Any:
    """The job's status once it has settled (polling, as a client would), within 10 s."""
    with anyio.fail_after(10):
        while True:
            response = await client.get(f"/bulk/status/{batch_id}")
            body = response.json()
            if body["state"] in SETTLED:
                return body
            await anyio.sleep(0.01)


def is_error_body(body: object) -> bool:
    """The one error shape: a text ``detail`` and a ``code``."""
    return (
        isinstance(body, dict)
        and isinstance(body.get("detail"), str)
        and isinstance(body.get("code"), str)
    )
