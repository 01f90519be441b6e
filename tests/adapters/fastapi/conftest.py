"""The service over ASGI, on a processor whose directory is an in-memory fake."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from hospital_bulk import BulkProcessor
from hospital_bulk.testing import FakeDirectory
from hospital_bulk_fastapi import ServiceSettings, create_app
from tests.helpers import UNPACED

from .support import serve


@pytest.fixture(name="fake")
def fixture_fake() -> FakeDirectory:
    """A fresh directory whose creates take a millisecond."""
    return FakeDirectory(latency=0.001)


@pytest.fixture(name="processor")
def fixture_processor(fake: FakeDirectory) -> BulkProcessor:
    """A processor on the fake: unpaced, quick retries, quick watch polls."""
    return BulkProcessor(fake, settings=UNPACED)


@pytest.fixture(name="settings")
def fixture_settings() -> ServiceSettings:
    """Every setting the tests rely on, spelled out so the environment cannot leak in."""
    return ServiceSettings(
        api_base="embedded",
        store="memory://",
        rate_limit=0,
        max_upload_bytes=64 * 1024,
        sync_timeout=10.0,
        graceful_timeout=1.0,
    )


@pytest.fixture(name="app")
def fixture_app(settings: ServiceSettings, processor: BulkProcessor) -> FastAPI:
    return create_app(settings, processor=processor)


@pytest.fixture(name="client")
async def fixture_client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client of the app, inside its lifespan."""
    async with serve(app) as client:
        yield client
