"""One behaviour suite every DirectoryClient in front of the directory must pass.

The directory is always a :class:`~hospital_bulk.testing.FakeDirectory`, the single
source of the upstream's semantics: the suite injects its faults and reads what it
stored. What varies is the client under test and how it reaches the fake. Subclass
:class:`DirectoryContract` in a test module (its name must start with ``Test``) and
give it a ``connect`` fixture: a function from a test's fake to an async context
manager yielding the client in front of it (see :data:`Connect`)::

    class TestMyClient(DirectoryContract):
        @pytest.fixture(name="connect")
        def fixture_connect(self) -> Connect:
            @asynccontextmanager
            async def connect(fake: FakeDirectory) -> AsyncIterator[DirectoryClient]:
                transport = httpx.MockTransport(fake.http_handler)
                async with MyClient("http://directory.test", transport=transport) as client:
                    yield client

            return connect

A client that reaches the fake over a real socket cannot see a refused connection
(:attr:`DirectoryContract.not_sent_error` says what it sees instead). The tests are
async and run with anyio's pytest plugin (installed with anyio). This module needs
pytest; ``hospital_bulk.testing`` itself does not import it.
"""

# The house style is `assert expected == actual`, which ruff's SIM300 calls yoda.

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import ClassVar, TypeAlias
from uuid import UUID, uuid4

import pytest

from hospital_bulk import (
    DirectoryClient,
    HospitalRecord,
    MaybeLandedError,
    NotSentError,
    RateLimit,
    RejectedError,
    ThrottledError,
)
from hospital_bulk.testing import FakeDirectory, Fault

__all__ = ["Connect", "DirectoryContract"]

#: How a test reaches its fake: the client under test, in front of that fake.
Connect: TypeAlias = Callable[[FakeDirectory], AbstractAsyncContextManager[DirectoryClient]]

# The hospital most tests create.
_RECORD = HospitalRecord("General Hospital", "1 Main Street", "555-0100")


def _named(count: int) -> list[HospitalRecord]:
    """``count`` distinct records: Hospital 1 at 1 Main Street, and so on."""
    return [HospitalRecord(f"Hospital {n}", f"{n} Main Street") for n in range(1, count + 1)]


class DirectoryContract:
    """What every :class:`~hospital_bulk.DirectoryClient` must do; subclass it to run it.

    The subclass provides the ``connect`` fixture (see the module's docstring).
    """

    pytestmark: ClassVar[list[pytest.MarkDecorator]] = [pytest.mark.anyio]

    #: What a create raises when the fake drops it unsent (``Fault.NOT_SENT``). Over a
    #: real socket, set it to ``MaybeLandedError``: a listening server cannot refuse a
    #: request it has read, only drop the connection unanswered, which no client can
    #: tell from a lost answer.
    not_sent_error: ClassVar[type[Exception]] = NotSentError

    @pytest.fixture(name="fake")
    def fixture_fake(self) -> FakeDirectory:
        """The directory's state, for checking what a call really stored."""
        return FakeDirectory()

    @pytest.fixture(name="directory")
    async def fixture_directory(
        self, fake: FakeDirectory, connect: Connect
    ) -> AsyncIterator[DirectoryClient]:
        """A client of ``fake``, reached the way ``connect`` says."""
        async with connect(fake) as client:
            yield client

    @pytest.fixture(name="batch_id")
    def fixture_batch_id(self) -> UUID:
        """A batch of the test's own."""
        return uuid4()

    async def test_create_returns_an_inactive_hospital_of_the_batch(
        self, directory: DirectoryClient, fake: FakeDirectory, batch_id: UUID
    ) -> None:
        """A create answers the stored hospital: inactive, in the batch, with a UTC time."""
        hospital = await directory.create_hospital(_RECORD, batch_id)

        assert (_RECORD, batch_id, False) == (
            hospital.record(),
            hospital.creation_batch_id,
            hospital.active,
        )
        assert hospital.created_at is not None
        assert dt.timedelta(0) == hospital.created_at.utcoffset()
        assert [hospital] == fake.hospitals

    async def test_ids_count_up_from_one(self, directory: DirectoryClient, batch_id: UUID) -> None:
        """Ids are one counter for the whole directory, starting at 1."""
        ids = [(await directory.create_hospital(r, batch_id)).id for r in _named(3)]

        assert [1, 2, 3] == ids

    async def test_list_returns_the_batch_in_id_order(
        self, directory: DirectoryClient, batch_id: UUID
    ) -> None:
        """Listing a batch gives its hospitals and nothing from other batches."""
        created = [await directory.create_hospital(r, batch_id) for r in _named(2)]
        await directory.create_hospital(_RECORD, uuid4())

        assert created == await directory.list_batch(batch_id)

    async def test_listing_an_empty_batch_is_empty(self, directory: DirectoryClient) -> None:
        """The upstream's 404 for an unknown batch reads as no hospitals."""
        assert [] == await directory.list_batch(uuid4())

    async def test_activation_activates_the_whole_batch(
        self, directory: DirectoryClient, batch_id: UUID
    ) -> None:
        """Activation counts the batch's hospitals and makes every one active."""
        for record in _named(3):
            await directory.create_hospital(record, batch_id)

        assert 3 == await directory.activate_batch(batch_id)
        assert [True, True, True] == [h.active for h in await directory.list_batch(batch_id)]

    async def test_second_activation_is_rejected(
        self, directory: DirectoryClient, batch_id: UUID
    ) -> None:
        """A batch is activated once: the second time is a 400."""
        await directory.create_hospital(_RECORD, batch_id)
        await directory.activate_batch(batch_id)

        with pytest.raises(RejectedError) as caught:
            await directory.activate_batch(batch_id)

        assert 400 == caught.value.status

    async def test_activating_an_empty_batch_is_rejected(self, directory: DirectoryClient) -> None:
        """There is nothing to activate in an unknown batch: 404."""
        with pytest.raises(RejectedError) as caught:
            await directory.activate_batch(uuid4())

        assert 404 == caught.value.status

    async def test_the_21st_create_in_a_batch_is_rejected(
        self, directory: DirectoryClient, fake: FakeDirectory, batch_id: UUID
    ) -> None:
        """Sequential creates past 20 in one batch get the upstream's 400."""
        for record in _named(20):
            await directory.create_hospital(record, batch_id)

        with pytest.raises(RejectedError) as caught:
            await directory.create_hospital(_RECORD, batch_id)

        assert (400, "Batch cannot exceed 20 hospitals") == (caught.value.status, str(caught.value))
        assert 20 == len(fake.batch(batch_id))

    async def test_delete_batch_counts_and_empties_it(
        self, directory: DirectoryClient, batch_id: UUID
    ) -> None:
        """Deleting a batch says how many went; listing it afterwards is empty."""
        for record in _named(2):
            await directory.create_hospital(record, batch_id)

        assert 2 == await directory.delete_batch(batch_id)
        assert [] == await directory.list_batch(batch_id)

    async def test_deleting_a_missing_batch_is_zero(self, directory: DirectoryClient) -> None:
        """The upstream's 404 for an empty batch reads as nothing deleted."""
        assert 0 == await directory.delete_batch(uuid4())

    async def test_delete_hospital_says_whether_it_existed(
        self, directory: DirectoryClient, batch_id: UUID
    ) -> None:
        """The first delete of a hospital is True (204), the second False (404)."""
        hospital = await directory.create_hospital(_RECORD, batch_id)

        assert [True, False] == [
            await directory.delete_hospital(hospital.id),
            await directory.delete_hospital(hospital.id),
        ]

    async def test_ping_answers(self, directory: DirectoryClient) -> None:
        """A healthy directory answers a ping: it returns, raising nothing."""
        await directory.ping()

    async def test_a_blank_name_is_rejected_as_invalid(
        self, directory: DirectoryClient, fake: FakeDirectory, batch_id: UUID
    ) -> None:
        """A name of spaces fails the upstream's validation: 422, nothing stored."""
        with pytest.raises(RejectedError) as caught:
            await directory.create_hospital(HospitalRecord("   ", "1 Main Street"), batch_id)

        assert 422 == caught.value.status
        assert "body.name" in str(caught.value)
        assert [] == fake.hospitals

    async def test_creates_over_the_rate_limit_are_throttled(
        self, connect: Connect, batch_id: UUID
    ) -> None:
        """Past the limit the upstream answers 429 without Retry-After; nothing is stored."""
        fake = FakeDirectory(create_limit=RateLimit(2, 60.0))

        async with connect(fake) as directory:
            for record in _named(2):
                await directory.create_hospital(record, batch_id)
            with pytest.raises(ThrottledError) as caught:
                await directory.create_hospital(_RECORD, batch_id)

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
        self,
        directory: DirectoryClient,
        fake: FakeDirectory,
        batch_id: UUID,
        fault: Fault,
        error: type[Exception],
        stored: int,
    ) -> None:
        """Every fault surfaces as the exception its retry safety calls for."""
        if fault is Fault.NOT_SENT:
            error = self.not_sent_error
        fake.inject(fault)

        with pytest.raises(error):
            await directory.create_hospital(_RECORD, batch_id)

        assert stored == len(fake.batch(batch_id))

    async def test_a_lost_activation_still_activated(
        self, directory: DirectoryClient, fake: FakeDirectory, batch_id: UUID
    ) -> None:
        """FAIL_AFTER_STORING on activation: MaybeLanded, yet the batch is active."""
        await directory.create_hospital(_RECORD, batch_id)
        fake.inject(Fault.FAIL_AFTER_STORING, operation="activate")

        with pytest.raises(MaybeLandedError):
            await directory.activate_batch(batch_id)

        assert [True] == [h.active for h in fake.batch(batch_id)]
