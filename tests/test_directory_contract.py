"""The directory contract (``hospital_bulk.testing.directory_contract``), each way we reach it.

The directory is always a FakeDirectory; what varies is the client and its road to
the fake: the fake itself, the real client over its HTTP face, and the real client
over TCP to the stand-in serving it under uvicorn. Another way joins with one more
subclass.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import httpx
import pytest

from hospital_bulk import DirectoryClient, HttpDirectoryClient, MaybeLandedError
from hospital_bulk.testing import FakeDirectory
from hospital_bulk.testing.directory_contract import Connect, DirectoryContract
from hospital_bulk_standin import DirectoryApp, create_directory_app

from .servers import serve_in_thread


@asynccontextmanager
async def direct(fake: FakeDirectory) -> AsyncIterator[DirectoryClient]:
    """The fake itself, as the engine's tests use it."""
    yield fake


@asynccontextmanager
async def over_http(fake: FakeDirectory) -> AsyncIterator[DirectoryClient]:
    """The real client, talking HTTP to the fake's handler."""
    transport = httpx.MockTransport(fake.http_handler)
    async with httpx.AsyncClient(transport=transport) as http:
        yield HttpDirectoryClient("http://directory.test", http=http)


@pytest.fixture(name="standin", scope="module")
def fixture_standin() -> Iterator[tuple[DirectoryApp, str]]:
    """The stand-in's app and its URL, served in a thread until the module is done."""
    app = create_directory_app(FakeDirectory())
    with serve_in_thread(app) as url:
        yield app, url


class TestFake(DirectoryContract):
    """The fake itself, as the engine's tests use it."""

    @pytest.fixture(name="connect")
    def fixture_connect(self) -> Connect:
        """The fake is its own client."""
        return direct


class TestHttp(DirectoryContract):
    """The real client over the fake's HTTP face (``httpx.MockTransport``)."""

    @pytest.fixture(name="connect")
    def fixture_connect(self) -> Connect:
        """HttpDirectoryClient on a MockTransport of the fake's handler."""
        return over_http


class TestStandin(DirectoryContract):
    """The real client, over TCP, to the stand-in directory serving the fake under uvicorn.

    One server (in a thread) serves the whole module: each test swaps in its own fake,
    so a server's start and stop (~0.2 s) are paid once.
    """

    not_sent_error = MaybeLandedError

    @pytest.fixture(name="connect")
    def fixture_connect(self, standin: tuple[DirectoryApp, str]) -> Connect:
        """HttpDirectoryClient to the stand-in, which serves the test's fake."""
        app, url = standin

        @asynccontextmanager
        async def over_a_socket(fake: FakeDirectory) -> AsyncIterator[DirectoryClient]:
            app.state.directory = fake
            async with HttpDirectoryClient(url) as client:
                yield client

        return over_a_socket
