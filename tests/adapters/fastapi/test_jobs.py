"""Reading and managing jobs: status with ETags, list, resume, cancel, delete, CSV results."""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest

from hospital_bulk import BulkProcessor
from hospital_bulk.testing import FakeDirectory, Fault
from hospital_bulk_fastapi import ServiceSettings, create_app
from tests.helpers import UNPACED, csv_bytes, records

from .support import is_error_body, serve, settled, upload

pytestmark = pytest.mark.anyio

WEIRD_IDS = ["nope", str(uuid.uuid4()), "..", "%00", "a%20b", "x" * 2000, "%2e%2e", "ü"]


@pytest.fixture(name="slow_client")
async def fixture_slow_client(settings: ServiceSettings) -> AsyncIterator[httpx.AsyncClient]:
    """A client of a service whose creates take 0.3 s: jobs are caught running."""
    app = create_app(
        settings, processor=BulkProcessor(FakeDirectory(latency=0.3), settings=UNPACED)
    )
    async with serve(app) as client:
        yield client


async def submit(client: httpx.AsyncClient, count: int = 3, *, wait: bool = True) -> str:
    headers = {} if wait else {"Prefer": "respond-async"}
    response = await client.post(
        "/hospitals/bulk", files=upload(csv_bytes(records(count))), headers=headers
    )
    assert response.status_code in (200, 202)
    batch_id: str = response.json()["batch_id"]
    return batch_id


async def test_status_shows_counters_rows_and_timestamps(client: httpx.AsyncClient) -> None:
    """Status: the job's state, its counters in both vocabularies, and every row."""
    batch_id = await submit(client, 2)

    response = await client.get(f"/bulk/status/{batch_id}")

    assert 200 == response.status_code
    body = response.json()
    assert (batch_id, "completed", "hospitals.csv", 2) == (
        body["batch_id"],
        body["state"],
        body["file_name"],
        body["total_rows"],
    )
    assert {"total": 2, "created": 2, "activated": 2, "failed": 0, "unknown": 0, "pending": 0} == {
        key: value for key, value in body["progress"].items() if key != "rate"
    }
    assert (2, 0, True) == (
        body["processed_hospitals"],
        body["failed_hospitals"],
        body["batch_activated"],
    )
    assert [batch_id] == body["creation_batch_ids"]
    assert ["activated", "activated"] == [row["state"] for row in body["rows"]]
    assert {
        "row": 1,
        "line": 2,
        "name": "Hospital 1",
        "address": "1 Main Street",
        "phone": "555-0001",
        "status": "created_and_activated",
        "creation_batch_id": batch_id,
    } == {
        key: body["rows"][0][key]
        for key in ("row", "line", "name", "address", "phone", "status", "creation_batch_id")
    }
    assert None not in (body["created_at"], body["started_at"], body["finished_at"])
    assert body["last_seq"] > 0


async def test_status_etag_answers_304_until_something_changes(
    client: httpx.AsyncClient, fake: FakeDirectory
) -> None:
    """If-None-Match with the last ETag is a 304; a resume changes the ETag."""
    fake.inject(Fault.REJECT, name="Hospital 1")
    batch_id = await submit(client, 2)
    first = await client.get(f"/bulk/status/{batch_id}")
    etag = first.headers["etag"]

    unchanged = await client.get(f"/bulk/status/{batch_id}", headers={"If-None-Match": etag})
    star = await client.get(f"/bulk/status/{batch_id}", headers={"If-None-Match": "*"})
    other = await client.get(f"/bulk/status/{batch_id}", headers={"If-None-Match": '"nope"'})
    await client.post(f"/hospitals/bulk/{batch_id}/resume")
    changed = await client.get(f"/bulk/status/{batch_id}", headers={"If-None-Match": etag})

    assert (304, b"", etag) == (unchanged.status_code, unchanged.content, unchanged.headers["etag"])
    assert (304, 200) == (star.status_code, other.status_code)
    assert 200 == changed.status_code
    assert etag != changed.headers["etag"]
    assert "completed" == changed.json()["state"]


@pytest.mark.parametrize("batch_id", WEIRD_IDS)
async def test_unknown_ids_are_404_everywhere(client: httpx.AsyncClient, batch_id: str) -> None:
    """Any unknown id, however odd, is a 404 (never a 422) on every route: `job_not_found`,
    or `not_found` where the URL itself resolves elsewhere (``..``)."""
    calls = [
        ("GET", f"/bulk/status/{batch_id}"),
        ("POST", f"/hospitals/bulk/{batch_id}/resume"),
        ("POST", f"/hospitals/bulk/{batch_id}/cancel"),
        ("DELETE", f"/hospitals/bulk/{batch_id}"),
        ("GET", f"/hospitals/bulk/{batch_id}/results.csv"),
        ("GET", f"/hospitals/bulk/{batch_id}/events"),
    ]
    for method, url in calls:
        response = await client.request(method, url)
        assert 404 == response.status_code
        assert response.json()["code"] in ("job_not_found", "not_found")


async def test_list_is_newest_first_and_paginated(client: httpx.AsyncClient) -> None:
    """Jobs newest first; `limit`/`offset` page through them; `next_offset` ends as null."""
    ids = [await submit(client, 1) for _ in range(3)]

    first = (await client.get("/hospitals/bulk", params={"limit": 2})).json()
    second = (await client.get("/hospitals/bulk", params={"limit": 2, "offset": 2})).json()

    assert ids[::-1][:2] == [job["batch_id"] for job in first["jobs"]]
    assert (2, 0, 2) == (first["limit"], first["offset"], first["next_offset"])
    assert [ids[0]] == [job["batch_id"] for job in second["jobs"]]
    assert second["next_offset"] is None
    assert "completed" == first["jobs"][0]["state"]


@pytest.mark.parametrize(
    "params",
    [{"limit": "ten"}, {"limit": 0}, {"limit": 501}, {"offset": -1}, {"offset": "1.5"}],
)
async def test_bad_paging_is_422(client: httpx.AsyncClient, params: dict[str, object]) -> None:
    """Paging parameters out of range or not integers: 422 naming the parameter."""
    response = await client.get("/hospitals/bulk", params=params)  # type: ignore[arg-type]

    assert (422, "invalid_request") == (response.status_code, response.json()["code"])
    assert response.json()["errors"][0]["column"].startswith("query.")


async def test_resume_retries_only_failed_rows_and_activates(
    client: httpx.AsyncClient, fake: FakeDirectory
) -> None:
    """A rejected row fails the first run; resume creates it alone and activates the batch."""
    fake.inject(Fault.REJECT, name="Hospital 2")
    batch_id = await submit(client, 3)
    creates_before = fake.stats.calls["create"]

    response = await client.post(f"/hospitals/bulk/{batch_id}/resume")

    assert 200 == response.status_code
    body = response.json()
    assert (batch_id, "completed", 0, True) == (
        body["batch_id"],
        body["state"],
        body["failed_hospitals"],
        body["batch_activated"],
    )
    assert 1 == fake.stats.calls["create"] - creates_before
    assert 3 == len(fake.hospitals)


async def test_resume_async_answers_202(client: httpx.AsyncClient, fake: FakeDirectory) -> None:
    """Resume follows the upload's rules: `?mode=async` answers 202 with Location."""
    fake.inject(Fault.REJECT, name="Hospital 1")
    batch_id = await submit(client, 1)

    response = await client.post(f"/hospitals/bulk/{batch_id}/resume", params={"mode": "async"})

    assert (202, f"/bulk/status/{batch_id}") == (response.status_code, response.headers["location"])
    assert "completed" == (await settled(client, batch_id))["state"]


async def test_resume_of_a_completed_job_is_409(client: httpx.AsyncClient) -> None:
    """Nothing is left to resume in a completed job: 409 with its state."""
    batch_id = await submit(client, 1)

    response = await client.post(f"/hospitals/bulk/{batch_id}/resume")

    assert (409, "job_conflict", "completed") == (
        response.status_code,
        response.json()["code"],
        response.json()["state"],
    )


async def test_resume_and_delete_of_a_running_job_are_409(slow_client: httpx.AsyncClient) -> None:
    """While a job runs, resume and delete are refused with 409; it then completes."""
    batch_id = await submit(slow_client, 2, wait=False)

    resumed = await slow_client.post(f"/hospitals/bulk/{batch_id}/resume")
    deleted = await slow_client.delete(f"/hospitals/bulk/{batch_id}")

    assert (409, 409) == (resumed.status_code, deleted.status_code)
    assert is_error_body(resumed.json())
    assert "completed" == (await settled(slow_client, batch_id))["state"]


async def test_cancel_stops_a_running_job(slow_client: httpx.AsyncClient) -> None:
    """Cancel while running: 202, creates in flight finish, the job ends `cancelled`."""
    batch_id = await submit(slow_client, 45, wait=False)

    response = await slow_client.post(f"/hospitals/bulk/{batch_id}/cancel")

    assert 202 == response.status_code
    final = await settled(slow_client, batch_id)
    assert "cancelled" == final["state"]
    assert final["progress"]["created"] < 45


async def test_cancel_of_a_finished_job_is_409(client: httpx.AsyncClient) -> None:
    """A completed job cannot be cancelled."""
    batch_id = await submit(client, 1)

    response = await client.post(f"/hospitals/bulk/{batch_id}/cancel")

    assert (409, "completed") == (response.status_code, response.json()["state"])


async def test_delete_removes_the_hospitals_upstream(
    client: httpx.AsyncClient, fake: FakeDirectory
) -> None:
    """Delete: the batch is gone upstream, and the status then shows `deleted`."""
    batch_id = await submit(client, 3)

    response = await client.delete(f"/hospitals/bulk/{batch_id}")

    assert (200, "deleted") == (response.status_code, response.json()["state"])
    assert [] == fake.hospitals
    assert "deleted" == (await client.get(f"/bulk/status/{batch_id}")).json()["state"]


async def test_delete_when_the_directory_fails_is_502(
    client: httpx.AsyncClient, fake: FakeDirectory
) -> None:
    """An upstream that keeps failing the delete: 502 `upstream_error`; deleting again works."""
    batch_id = await submit(client, 1)
    fake.inject(Fault.NOT_SENT, operation="delete_batch", times=100)

    failed = await client.delete(f"/hospitals/bulk/{batch_id}")
    fake.clear_faults()
    again = await client.delete(f"/hospitals/bulk/{batch_id}")

    assert (502, "upstream_error") == (failed.status_code, failed.json()["code"])
    assert 200 == again.status_code
    assert [] == fake.hospitals


def read_csv(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


async def test_results_csv_lists_every_row_with_its_outcome(
    client: httpx.AsyncClient, fake: FakeDirectory
) -> None:
    """results.csv: one line per row, with status, state, hospital id and error."""
    fake.inject(Fault.REJECT, name="Hospital 2")
    batch_id = await submit(client, 3)

    response = await client.get(f"/hospitals/bulk/{batch_id}/results.csv")

    assert 200 == response.status_code
    assert response.headers["content-type"].startswith("text/csv")
    assert f"{batch_id}-results.csv" in response.headers["content-disposition"]
    rows = read_csv(response.text)
    assert ["created", "failed", "created"] == [row["status"] for row in rows]
    assert ("rejected", "") == (rows[1]["error_code"], rows[1]["hospital_id"])
    assert ["1", "2", "3"] == [row["row"] for row in rows]


async def test_failed_rows_come_back_as_a_file_to_upload_again(
    client: httpx.AsyncClient, fake: FakeDirectory
) -> None:
    """`?status=failed`: name,address,phone of the failed rows, ready for a new upload."""
    fake.inject(Fault.REJECT, name="Hospital 2")
    batch_id = await submit(client, 3)

    response = await client.get(
        f"/hospitals/bulk/{batch_id}/results.csv", params={"status": "failed"}
    )
    again = await client.post("/hospitals/bulk", files=upload(response.content))

    header = "name,address,phone,row,error_code,error\r\n"
    assert header + "Hospital 2,2 Main Street,555-0002,2,rejected," in response.text
    assert "0" == response.headers["x-rows-withheld"]
    assert (200, 1, "completed") == (
        again.status_code,
        again.json()["total_hospitals"],
        again.json()["state"],
    )


async def test_rows_that_may_exist_upstream_are_withheld_from_the_failed_file(
    client: httpx.AsyncClient, fake: FakeDirectory
) -> None:
    """A row whose create may have landed would be created twice by a new upload: it is
    left out of `?status=failed` (resume settles it) and counted in X-Rows-Withheld."""
    fake.inject(Fault.FAIL_AFTER_STORING, name="Hospital 1")
    fake.inject(Fault.NOT_SENT, operation="list", times=1000)
    batch_id = await submit(client, 2)

    response = await client.get(
        f"/hospitals/bulk/{batch_id}/results.csv", params={"status": "failed"}
    )

    assert "name,address,phone,row,error_code,error\r\n" == response.text
    assert "1" == response.headers["x-rows-withheld"]


async def test_results_csv_filters_and_refuses_unknown_statuses(client: httpx.AsyncClient) -> None:
    """Any original status filters the full rows; anything else is a 422."""
    batch_id = await submit(client, 2)
    url = f"/hospitals/bulk/{batch_id}/results.csv"

    activated = await client.get(url, params={"status": "created_and_activated"})
    created = await client.get(url, params={"status": "created"})
    bad = await client.get(url, params={"status": "everything"})

    assert 2 == len(read_csv(activated.text))
    assert [] == read_csv(created.text)
    assert (422, "invalid_request") == (bad.status_code, bad.json()["code"])
