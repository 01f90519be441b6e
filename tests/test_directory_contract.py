"""One behaviour suite every DirectoryClient in front of the directory must pass.

The directory is always a FakeDirectory (the single source of the upstream's
semantics); what varies is how we reach it. To add a way (a uvicorn stand-in on a
socket, say), write one more async context manager and add it to ``CONNECTIONS``.
"""

# The house style is `assert expected == actual`, which ruff's SIM300 calls yoda.

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, ExitStack, asynccontextmanager
from uuid import UUID, uuid4

import httpx
import pytest

from hospital_bulk import (
    DirectoryClient,
    HospitalRecord,
    HttpDirectoryClient,
    MaybeLandedError,
    NotSentError,
    RateLimit,
    RejectedError,
    ThrottledError,
)
from hospital_bulk.testing import FakeDirectory, Fault
from hospital_bulk_standin import create_directory_app

from .servers import serve_in_thread

pytestmark = pytest.mark.anyio

Connect = Callable[[FakeDirectory], AbstractAsyncContextManager[DirectoryClient]]

RECORD = HospitalRecord("General Hospital", "1 Main Street", "555-0100")


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


class OverASocket:
    """The real client, over TCP, to the stand-in directory serving the fake under uvicorn.

    One server (in a thread) serves the whole module: each connection swaps in its
    test's fake, so a server's start and stop (~0.2 s) are paid once.
    """

    def __init__(self) -> None:
        self.app = create_directory_app(FakeDirectory())
        self.servers = ExitStack()
        self.url: str | None = None

    @asynccontextmanager
    async def __call__(self, fake: FakeDirectory) -> AsyncIterator[DirectoryClient]:
        if self.url is None:
            self.url = self.servers.enter_context(serve_in_thread(self.app))
        self.app.state.directory = fake
        async with HttpDirectoryClient(self.url) as client:
            yield client

    def close(self) -> None:
        self.url = None
        self.servers.close()


over_a_socket = OverASocket()

CONNECTIONS: dict[str, Connect] = {"fake": direct, "http": over_http, "standin": over_a_socket}


@pytest.fixture(name="standin_server", scope="module", autouse=True)
def fixture_standin_server() -> Iterator[None]:
    """The stand-in's server, if a test started it, stops with the module."""
    yield
    over_a_socket.close()


@pytest.fixture(name="connect", params=sorted(CONNECTIONS))
def fixture_connect(request: pytest.FixtureRequest) -> Connect:
    """How the test reaches the directory; every test runs once per way."""
    return CONNECTIONS[request.param]


@pytest.fixture(name="fake")
def fixture_fake() -> FakeDirectory:
    """The directory's state, for checking what a call really stored."""
    return FakeDirectory()


@pytest.fixture(name="directory")
async def fixture_directory(
    fake: FakeDirectory, connect: Connect
) -> AsyncIterator[DirectoryClient]:
    """A client of ``fake``, reached the way ``connect`` says."""
    async with connect(fake) as client:
        yield client


@pytest.fixture(name="batch_id")
def fixture_batch_id() -> UUID:
    return uuid4()


def named(count: int) -> list[HospitalRecord]:
    return [HospitalRecord(f"Hospital {n}", f"{n} Main Street") for n in range(1, count + 1)]


async def test_create_returns_an_inactive_hospital_of_the_batch(
    directory: DirectoryClient, fake: FakeDirectory, batch_id: UUID
) -> None:
    """A create answers the stored hospital: inactive, in the batch, with a UTC time."""
    hospital = await directory.create_hospital(RECORD, batch_id)

    assert (RECORD, batch_id, False) == (
        hospital.record(),
        hospital.creation_batch_id,
        hospital.active,
    )
    assert hospital.created_at is not None
    assert dt.timedelta(0) == hospital.created_at.utcoffset()
    assert [hospital] == fake.hospitals


async def test_ids_count_up_from_one(directory: DirectoryClient, batch_id: UUID) -> None:
    """Ids are one counter for the whole directory, starting at 1."""
    ids = [(await directory.create_hospital(r, batch_id)).id for r in named(3)]

    assert [1, 2, 3] == ids


async def test_list_returns_the_batch_in_id_order(
    directory: DirectoryClient, batch_id: UUID
) -> None:
    """Listing a batch gives its hospitals and nothing from other batches."""
    created = [await directory.create_hospital(r, batch_id) for r in named(2)]
    await directory.create_hospital(RECORD, uuid4())

    assert created == await directory.list_batch(batch_id)


async def test_listing_an_empty_batch_is_empty(directory: DirectoryClient) -> None:
    """The upstream's 404 for an unknown batch reads as no hospitals."""
    assert [] == await directory.list_batch(uuid4())


async def test_activation_activates_the_whole_batch(
    directory: DirectoryClient, batch_id: UUID
) -> None:
    """Activation counts the batch's hospitals and makes every one active."""
    for record in named(3):
        await directory.create_hospital(record, batch_id)

    assert 3 == await directory.activate_batch(batch_id)
    assert [True, True, True] == [h.active for h in await directory.list_batch(batch_id)]


async def test_second_activation_is_rejected(directory: DirectoryClient, batch_id: UUID) -> None:
    """A batch is activated once: the second time is a 400."""
    await directory.create_hospital(RECORD, batch_id)
    await directory.activate_batch(batch_id)

    with pytest.raises(RejectedError) as caught:
        await directory.activate_batch(batch_id)

    assert 400 == caught.value.status


async def test_activating_an_empty_batch_is_rejected(directory: DirectoryClient) -> None:
    """There is nothing to activate in an unknown batch: 404."""
    with pytest.raises(RejectedError) as caught:
        await directory.activate_batch(uuid4())

    assert 404 == caught.value.status


async def test_the_21st_create_in_a_batch_is_rejected(
    directory: DirectoryClient, fake: FakeDirectory, batch_id: UUID
) -> None:
    """Sequential creates past 20 in one batch get the upstream's 400."""
    for record in named(20):
        await directory.create_hospital(record, batch_id)

    with pytest.raises(RejectedError) as caught:
        await directory.create_hospital(RECORD, batch_id)

    assert (400, "Batch cannot exceed 20 hospitals") == (caught.value.status, str(caught.value))
    assert 20 == len(fake.batch(batch_id))


async def test_delete_batch_counts_and_empties_it(
    directory: DirectoryClient, batch_id: UUID
) -> None:
    """Deleting a batch says how many went; listing it afterwards is empty."""
    for record in named(2):
        await directory.create_hospital(record, batch_id)

    assert 2 == await directory.delete_batch(batch_id)
    assert [] == await directory.list_batch(batch_id)


async def test_deleting_a_missing_batch_is_zero(directory: DirectoryClient) -> None:
    """The upstream's 404 for an empty batch reads as nothing deleted."""
    assert 0 == await directory.delete_batch(uuid4())


async def test_delete_hospital_says_whether_it_existed(
    directory: DirectoryClient, batch_id: UUID
) -> None:
    """The first delete of a hospital is True (204), the second False (404)."""
    hospital = await directory.create_hospital(RECORD, batch_id)

    assert [True, False] == [
        await directory.delete_hospital(hospital.id),
        await directory.delete_hospital(hospital.id),
    ]


async def test_ping_answers(directory: DirectoryClient) -> None:
    """A healthy directory answers a ping: it returns, raising nothing."""
    await directory.ping()


async def test_a_blank_name_is_rejected_as_invalid(
    directory: DirectoryClient, fake: FakeDirectory, batch_id: UUID
) -> None:
    """A name of spaces fails the upstream's validation: 422, nothing stored."""
    with pytest.raises(RejectedError) as caught:
        await directory.create_hospital(HospitalRecord("   ", "1 Main Street"), batch_id)

    assert 422 == caught.value.status
    assert "body.name" in str(caught.value)
    assert [] == fake.hospitals


async def test_creates_over_the_rate_limit_are_throttled(connect: Connect, batch_id: UUID) -> None:
    """Past the limit the upstream answers 429 without Retry-After; nothing is stored."""
    fake = FakeDirectory(create_limit=RateLimit(2, 60.0))

    async with connect(fake) as directory:
        for record in named(2):
            await directory.create_hospital(record, batch_id)
        with pytest.raises(ThrottledError) as caught:
            await directory.create_hospital(RECORD, batch_id)

    assert (None, "Rate limit exceeded: 2 per 1 minute") == (
        caught.value.retry_after,
        str(caught.value),
    )
    assert 2 == len(fake.hospitals)


@pytest.mark.parametrize(
    ("fault", "error", "stored"),
    [
        (Fault.REJECT, RejectedError, 0),
        (Fault.THROTTLE, ThrottledError, 0),
        (Fault.NOT_SENT, NotSentError, 0),
        (Fault.FAIL_BEFORE_STORING, MaybeLandedError, 0),
        (Fault.FAIL_AFTER_STORING, MaybeLandedError, 1),
    ],
)
async def test_each_fault_raises_its_class_and_stores_or_not(
    directory: DirectoryClient,
    fake: FakeDirectory,
    connect: Connect,
    batch_id: UUID,
    fault: Fault,
    error: type[Exception],
    stored: int,
) -> None:
    """Every fault surfaces as the exception its retry safety calls for."""
    if fault is Fault.NOT_SENT and connect is over_a_socket:
        # A listening server cannot refuse a request it has read: it can only drop the
        # connection unanswered, which no client can tell from a lost answer.
        error = MaybeLandedError
    fake.inject(fault)

    with pytest.raises(error):
        await directory.create_hospital(RECORD, batch_id)

    assert stored == len(fake.batch(batch_id))


async def test_a_lost_activation_still_activated(
    directory: DirectoryClient, fake: FakeDirectory, batch_id: UUID
) -> None:
    """FAIL_AFTER_STORING on activation: MaybeLanded, yet the batch is active."""
    await directory.create_hospital(RECORD, batch_id)
    fake.inject(Fault.FAIL_AFTER_STORING, operation="activate")

    with pytest.raises(MaybeLandedError):
        await directory.activate_batch(batch_id)

    assert [True] == [h.active for h in fake.batch(batch_id)]
