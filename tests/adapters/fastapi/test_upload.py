"""Uploads and validation: the original answers, waiting rules, idempotency, bad input."""

from __future__ import annotations

import functools

import anyio
import attrs
import httpx
import pytest

from hospital_bulk import BulkProcessor, CsvOptions
from hospital_bulk.testing import FakeDirectory, Fault
from hospital_bulk_fastapi import ServiceSettings, create_app
from tests.helpers import UNPACED, csv_bytes, records

from .support import is_error_body, serve, settled, upload

pytestmark = pytest.mark.anyio

SUMMARY_KEYS = {
    "batch_id",
    "state",
    "total_hospitals",
    "processed_hospitals",
    "failed_hospitals",
    "processing_time_seconds",
    "batch_activated",
    "hospitals",
}


@pytest.fixture(name="slow")
def fixture_slow() -> FakeDirectory:
    """A directory whose creates take long enough to catch a job running."""
    return FakeDirectory(latency=0.3)


async def test_upload_answers_the_original_summary(
    client: httpx.AsyncClient, fake: FakeDirectory
) -> None:
    """A 3-row upload waits and answers 200 in the original shape, every row activated."""
    response = await client.post("/hospitals/bulk", files=upload(csv_bytes(records(3))))

    assert 200 == response.status_code
    body = response.json()
    assert SUMMARY_KEYS == set(body)
    assert (3, 3, 0, True, "completed") == (
        body["total_hospitals"],
        body["processed_hospitals"],
        body["failed_hospitals"],
        body["batch_activated"],
        body["state"],
    )
    assert ["created_and_activated"] * 3 == [row["status"] for row in body["hospitals"]]
    assert {"row", "hospital_id", "name", "status", "error", "error_code"} == set(
        body["hospitals"][0]
    )
    upstream = {h.id for h in fake.hospitals if str(h.creation_batch_id) == body["batch_id"]}
    assert upstream == {row["hospital_id"] for row in body["hospitals"]}


async def test_a_rejected_row_is_reported_failed(
    client: httpx.AsyncClient, fake: FakeDirectory
) -> None:
    """A row the directory refuses is `failed` with its reason; the batch stays inactive."""
    fake.inject(Fault.REJECT, name="Hospital 2")

    body = (await client.post("/hospitals/bulk", files=upload(csv_bytes(records(3))))).json()

    assert ("completed_with_errors", 1, False) == (
        body["state"],
        body["failed_hospitals"],
        body["batch_activated"],
    )
    assert ["created", "failed", "created"] == [row["status"] for row in body["hospitals"]]
    assert "rejected" == body["hospitals"][1]["error_code"]


@pytest.mark.parametrize(
    ("headers", "params", "applied"),
    [
        ({"Prefer": "respond-async"}, {}, "respond-async"),
        ({"Prefer": "wait=5, respond-async"}, {}, "respond-async"),
        ({}, {"mode": "async"}, None),
    ],
)
async def test_async_upload_answers_202_with_location(
    client: httpx.AsyncClient, headers: dict[str, str], params: dict[str, str], applied: str | None
) -> None:
    """`Prefer: respond-async` or `?mode=async`: 202 at once, the job runs in the background."""
    response = await client.post(
        "/hospitals/bulk", files=upload(csv_bytes(records(2))), headers=headers, params=params
    )

    assert 202 == response.status_code
    body = response.json()
    assert f"/bulk/status/{body['batch_id']}" == response.headers["location"]
    assert response.headers["location"] == body["status_url"]
    assert applied == response.headers.get("preference-applied")
    assert "completed" == (await settled(client, body["batch_id"]))["state"]


async def test_mode_sync_overrides_prefer(client: httpx.AsyncClient) -> None:
    """`?mode=sync` waits even when the Prefer header asks otherwise."""
    response = await client.post(
        "/hospitals/bulk",
        files=upload(csv_bytes(records(1))),
        headers={"Prefer": "respond-async"},
        params={"mode": "sync"},
    )

    assert (200, "completed") == (response.status_code, response.json()["state"])


async def test_a_job_outlasting_prefer_wait_answers_202_and_goes_on(
    settings: ServiceSettings, slow: FakeDirectory
) -> None:
    """`Prefer: wait=0.05` on a slower job: 202 with Location; the job still completes."""
    app = create_app(settings, processor=BulkProcessor(slow, settings=UNPACED))
    async with serve(app) as client:
        response = await client.post(
            "/hospitals/bulk", files=upload(csv_bytes(records(2))), headers={"Prefer": "wait=0.05"}
        )

        assert (202, "wait=0.05") == (
            response.status_code,
            response.headers.get("preference-applied"),
        )
        assert "completed" == (await settled(client, response.json()["batch_id"]))["state"]


async def test_a_job_outlasting_the_sync_timeout_answers_202(
    settings: ServiceSettings, slow: FakeDirectory
) -> None:
    """HOSPITAL_BULK_SYNC_TIMEOUT caps every wait, `Prefer: wait` included."""
    quick = settings.model_copy(update={"sync_timeout": 0.05})
    app = create_app(quick, processor=BulkProcessor(slow, settings=UNPACED))
    async with serve(app) as client:
        response = await client.post(
            "/hospitals/bulk", files=upload(csv_bytes(records(2))), headers={"Prefer": "wait=60"}
        )

        assert 202 == response.status_code
        assert "completed" == (await settled(client, response.json()["batch_id"]))["state"]


async def test_a_client_that_hangs_up_does_not_stop_its_job(
    settings: ServiceSettings, slow: FakeDirectory
) -> None:
    """The request waiting for a job is cancelled mid-way; the job runs to the end."""
    processor = BulkProcessor(slow, settings=UNPACED)
    app = create_app(settings, processor=processor)
    async with serve(app) as client:
        async with anyio.create_task_group() as group:
            group.start_soon(
                functools.partial(
                    client.post, "/hospitals/bulk", files=upload(csv_bytes(records(2)))
                )
            )
            for _ in range(1000):  # until the job exists: a loaded machine may take a while
                if await processor.list_jobs():
                    break
                await anyio.sleep(0.01)
            group.cancel_scope.cancel()  # the client hangs up
        [job] = await processor.list_jobs()

        assert "completed" == (await settled(client, job.id))["state"]
    assert 2 == len(slow.hospitals)


async def test_a_retried_upload_with_the_same_idempotency_key_returns_the_first_job(
    client: httpx.AsyncClient, fake: FakeDirectory
) -> None:
    """Same Idempotency-Key twice: one job, one set of hospitals, the same batch_id."""
    headers = {"Idempotency-Key": "upload-42"}
    content = csv_bytes(records(3))

    first = await client.post("/hospitals/bulk", files=upload(content), headers=headers)
    second = await client.post("/hospitals/bulk", files=upload(content), headers=headers)

    assert (200, 200) == (first.status_code, second.status_code)
    assert first.json()["batch_id"] == second.json()["batch_id"]
    assert 3 == len(fake.hospitals)
    assert 1 == len((await client.get("/hospitals/bulk")).json()["jobs"])


async def test_an_idempotency_key_with_another_file_is_422_naming_the_key(
    client: httpx.AsyncClient, fake: FakeDirectory
) -> None:
    """The key of a first upload sent with a different file: 422 naming the key and the
    first job, nothing created; the first file again still answers its job."""
    headers = {"Idempotency-Key": "registry-2026-11-30"}
    first = await client.post(
        "/hospitals/bulk", files=upload(csv_bytes(records(2))), headers=headers
    )

    other = await client.post(
        "/hospitals/bulk", files=upload(csv_bytes(records(3))), headers=headers
    )
    again = await client.post(
        "/hospitals/bulk", files=upload(csv_bytes(records(2))), headers=headers
    )

    batch_id = first.json()["batch_id"]
    body = other.json()
    assert (422, "idempotency_key_reused") == (other.status_code, body["code"])
    assert "'registry-2026-11-30'" in body["detail"]
    assert batch_id in body["detail"]
    assert [("header.Idempotency-Key", "registry-2026-11-30", "a different file")] == [
        (error["column"], error["value"], error["message"]) for error in body["errors"]
    ]
    assert (200, batch_id) == (again.status_code, again.json()["batch_id"])
    assert 2 == len(fake.hospitals)
    assert 1 == len((await client.get("/hospitals/bulk")).json()["jobs"])


async def test_an_idempotency_key_with_other_options_is_422(client: httpx.AsyncClient) -> None:
    """The same bytes with another encoding or delimiter are another upload: 422 too."""
    headers = {"Idempotency-Key": "k"}
    content = csv_bytes(records(2))
    await client.post("/hospitals/bulk", files=upload(content), headers=headers)

    response = await client.post(
        "/hospitals/bulk", files=upload(content), headers=headers, params={"encoding": "latin-1"}
    )

    assert (422, "idempotency_key_reused") == (response.status_code, response.json()["code"])
    assert "encoding 'iso8859-1' instead of 'utf-8'" == response.json()["errors"][0]["message"]


async def test_an_async_retry_with_the_same_key_and_file_answers_the_same_job(
    client: httpx.AsyncClient,
) -> None:
    """With ?mode=async the retry is a 202 for the first job, as the first answer was."""
    headers = {"Idempotency-Key": "async-key"}
    content = csv_bytes(records(2))
    answers = [
        await client.post(
            "/hospitals/bulk", files=upload(content), headers=headers, params={"mode": "async"}
        )
        for _ in range(2)
    ]

    assert [202, 202] == [answer.status_code for answer in answers]
    assert 1 == len({answer.json()["batch_id"] for answer in answers})


#: What Excel on Windows saves as "CSV": cp1252, where 0x96 is an en dash.
EXCEL_CP1252 = (
    "name,address,phone\nClínica São José,Rua das Flores 10,555-0100\n"
    "Hôpital \u2013 Nord,2 rue du Nord,555-0101\n"
).encode("cp1252")


async def test_a_cp1252_file_is_refused_with_a_suggestion_and_read_with_encoding(
    client: httpx.AsyncClient, fake: FakeDirectory
) -> None:
    """Excel's cp1252: 400 by default with a finding that suggests encoding=cp1252; with
    ?encoding=cp1252 the hospitals are created with their names intact."""
    refused = await client.post("/hospitals/bulk", files=upload(EXCEL_CP1252))
    accepted = await client.post(
        "/hospitals/bulk", files=upload(EXCEL_CP1252), params={"encoding": "cp1252"}
    )

    assert (400, "invalid_csv") == (refused.status_code, refused.json()["code"])
    [finding] = refused.json()["errors"]
    assert ("encoding", 1, 2) == (finding["code"], finding["row"], finding["line"])
    assert "encoding=cp1252" in finding["message"]
    assert 200 == accepted.status_code
    assert ["Clínica São José", "Hôpital \u2013 Nord"] == [
        row["name"] for row in accepted.json()["hospitals"]
    ]
    assert ["Clínica São José", "Hôpital \u2013 Nord"] == [h.name for h in fake.hospitals]


async def test_a_semicolon_file_with_a_delimiter(
    client: httpx.AsyncClient, fake: FakeDirectory
) -> None:
    """?delimiter=; reads values holding commas that the sniffing would split at."""
    content = b"name;address\nGeneral Hospital;1 Main St, Springfield\n"

    response = await client.post(
        "/hospitals/bulk", files=upload(content), params={"delimiter": ";"}
    )

    assert 200 == response.status_code
    assert [("General Hospital", "1 Main St, Springfield")] == [
        (h.name, h.address) for h in fake.hospitals
    ]


async def test_validate_takes_encoding_and_delimiter(client: httpx.AsyncClient) -> None:
    """The report says which encoding and delimiter were used."""
    content = EXCEL_CP1252.replace(b",", b"|")

    response = await client.post(
        "/hospitals/bulk/validate",
        files=upload(content),
        params={"encoding": "windows-1252", "delimiter": "|"},
    )

    body = response.json()
    assert (True, 2, "cp1252", "|") == (
        body["valid"],
        body["valid_rows"],
        body["encoding"],
        body["delimiter"],
    )


@pytest.mark.parametrize("path", ["/hospitals/bulk", "/hospitals/bulk/validate"])
@pytest.mark.parametrize(
    ("params", "column"),
    [
        ({"encoding": "klingon"}, "query.encoding"),
        ({"encoding": "base64"}, "query.encoding"),
        ({"delimiter": "ab"}, "query.delimiter"),
        ({"delimiter": '"'}, "query.delimiter"),
    ],
)
async def test_a_bad_encoding_or_delimiter_is_422_naming_it(
    client: httpx.AsyncClient,
    fake: FakeDirectory,
    path: str,
    params: dict[str, str],
    column: str,
) -> None:
    """An unknown encoding or an unusable delimiter: 422 invalid_request, nothing read."""
    response = await client.post(path, files=upload(csv_bytes(records(1))), params=params)

    body = response.json()
    assert (422, "invalid_request", [column]) == (
        response.status_code,
        body["code"],
        [error["column"] for error in body["errors"]],
    )
    assert column in body["detail"]
    assert [] == fake.hospitals


async def test_concurrent_retries_with_one_key_run_one_job(
    client: httpx.AsyncClient, fake: FakeDirectory
) -> None:
    """Three simultaneous uploads with one key: all answer the same job, created once."""
    answers: list[httpx.Response] = []

    async def send() -> None:
        response = await client.post(
            "/hospitals/bulk",
            files=upload(csv_bytes(records(4))),
            headers={"Idempotency-Key": "same"},
        )
        answers.append(response)

    async with anyio.create_task_group() as group:
        for _ in range(3):
            group.start_soon(send)

    assert 1 == len({answer.json()["batch_id"] for answer in answers})
    assert 4 == len(fake.hospitals)


async def test_an_invalid_file_is_400_with_its_findings_and_creates_nothing(
    client: httpx.AsyncClient, fake: FakeDirectory
) -> None:
    """A row without address: 400 `invalid_csv`, findings by row, no job, no hospital."""
    content = b"name,address,phone\nGood,1 Main St,555-0100\nBad,,555-0101\n"

    response = await client.post("/hospitals/bulk", files=upload(content))

    assert 400 == response.status_code
    body = response.json()
    assert ("invalid_csv", 2, 1, 1) == (
        body["code"],
        body["total_rows"],
        body["valid_rows"],
        body["error_count"],
    )
    [finding] = body["errors"]
    assert {"row": 2, "line": 3, "column": "address", "code": "missing_value", "value": ""} == {
        key: finding[key] for key in ("row", "line", "column", "code", "value")
    }
    assert finding["message"]
    assert [] == fake.hospitals
    assert [] == (await client.get("/hospitals/bulk")).json()["jobs"]


async def test_a_file_over_max_rows_is_refused(
    settings: ServiceSettings, fake: FakeDirectory
) -> None:
    """More rows than the processor allows: 400 with a `too_many_rows` finding."""
    processor = BulkProcessor(fake, settings=attrs.evolve(UNPACED, csv=CsvOptions(max_rows=3)))
    async with serve(create_app(settings, processor=processor)) as client:
        response = await client.post("/hospitals/bulk", files=upload(csv_bytes(records(4))))

    assert 400 == response.status_code
    assert "too_many_rows" in [finding["code"] for finding in response.json()["errors"]]


@pytest.mark.parametrize(
    ("content", "code"),
    [
        (b"", "empty_file"),
        (b"name,address,phone\n", "no_data_rows"),
        (b"\x00\xff\xfe\x81binary\x00junk" * 50, "encoding"),
        (b"\n\n\n", "empty_file"),
        (b"a," * 5000 + b"\n", None),
    ],
    ids=["empty", "header-only", "binary", "blank-lines", "one-wide-row"],
)
async def test_weird_files_are_400_never_500(
    client: httpx.AsyncClient, content: bytes, code: str | None
) -> None:
    """Whatever the bytes, an upload that cannot run is a 400 `invalid_csv`."""
    response = await client.post("/hospitals/bulk", files=upload(content))

    assert (400, "invalid_csv") == (response.status_code, response.json()["code"])
    if code is not None:
        assert code in [finding["code"] for finding in response.json()["errors"]]


@pytest.mark.parametrize(
    "request_kwargs",
    [
        {"json": {"file": "name,address\nA,B\n"}},
        {"data": {"file": "name,address\nA,B\n"}},
        {"files": {"upload": ("a.csv", b"name,address\nA,B\n", "text/csv")}},
        {"content": b"name,address\nA,B\n", "headers": {"Content-Type": "text/csv"}},
        {},
    ],
    ids=["json", "form-field", "wrong-field", "raw-csv", "no-body"],
)
async def test_an_upload_without_a_file_field_says_how_to_send_one(
    client: httpx.AsyncClient, request_kwargs: dict[str, object]
) -> None:
    """No multipart field `file`: 422 `invalid_request`, with a message naming the field."""
    response = await client.post("/hospitals/bulk", **request_kwargs)  # type: ignore[arg-type]

    assert (422, "invalid_request") == (response.status_code, response.json()["code"])
    assert "'file'" in response.json()["detail"]


@pytest.mark.parametrize("path", ["/hospitals/bulk", "/hospitals/bulk/validate"])
@pytest.mark.parametrize(
    "content_type",
    ["multipart/form-data", "multipart/form-data; boundary=x", "multipart/form-data; boundary="],
)
async def test_a_broken_multipart_body_is_400(
    client: httpx.AsyncClient, path: str, content_type: str
) -> None:
    """A multipart body that does not parse is a 400 in the one error shape."""
    response = await client.post(
        path, content=b"--y\r\ngarbage", headers={"Content-Type": content_type}
    )

    assert 400 == response.status_code
    assert is_error_body(response.json())


async def test_an_upload_over_the_size_limit_is_413(
    client: httpx.AsyncClient, settings: ServiceSettings, fake: FakeDirectory
) -> None:
    """A file over HOSPITAL_BULK_MAX_UPLOAD_BYTES: 413 `payload_too_large`, nothing created."""
    content = csv_bytes(records(3)) + b"x" * settings.max_upload_bytes

    response = await client.post("/hospitals/bulk", files=upload(content))

    assert (413, "payload_too_large") == (response.status_code, response.json()["code"])
    assert [] == fake.hospitals


async def test_a_streamed_upload_over_the_limit_is_413(
    client: httpx.AsyncClient, settings: ServiceSettings
) -> None:
    """Without Content-Length the body is counted as it arrives, and refused past the limit."""

    async def chunks() -> object:
        yield b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.csv"\r\n\r\n'
        for _ in range(settings.max_upload_bytes // 1000 + 100):
            yield b"x" * 1000
        yield b"\r\n--b--\r\n"

    response = await client.post(
        "/hospitals/bulk",
        content=chunks(),  # type: ignore[arg-type]
        headers={"Content-Type": "multipart/form-data; boundary=b"},
    )

    assert (413, "payload_too_large") == (response.status_code, response.json()["code"])


@pytest.mark.parametrize(
    "headers",
    [
        {"Prefer": "wait=abc"},
        {"Prefer": "wait=-5"},
        {"Prefer": "wait=nan;x=1,,=,;,wait=inf"},
        {"Prefer": "x" * 8000},
        {"Idempotency-Key": ""},
        {"X-Junk": "y" * 60_000},
    ],
    ids=["wait-word", "wait-negative", "nonsense", "long-prefer", "empty-key", "huge-header"],
)
async def test_odd_headers_are_ignored_or_refused_never_500(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    """Malformed preferences are ignored (RFC 7240): the upload waits and answers 200."""
    response = await client.post(
        "/hospitals/bulk", files=upload(csv_bytes(records(1))), headers=headers
    )

    assert 200 == response.status_code


async def test_an_overlong_idempotency_key_is_422(client: httpx.AsyncClient) -> None:
    """Idempotency keys are at most 255 characters."""
    response = await client.post(
        "/hospitals/bulk",
        files=upload(csv_bytes(records(1))),
        headers={"Idempotency-Key": "k" * 256},
    )

    assert (422, "invalid_request") == (response.status_code, response.json()["code"])


async def test_validate_reports_without_creating(
    client: httpx.AsyncClient, fake: FakeDirectory
) -> None:
    """`/hospitals/bulk/validate`: the report of the file; no job, no hospital."""
    content = b"name,address,phone\nGood,1 Main St,555-0100\nBad,,555-0101\n"

    response = await client.post("/hospitals/bulk/validate", files=upload(content))

    assert 200 == response.status_code
    body = response.json()
    assert (False, 2, 1, 1, 0) == (
        body["valid"],
        body["total_rows"],
        body["valid_rows"],
        body["error_count"],
        body["warning_count"],
    )
    assert [2] == [finding["row"] for finding in body["errors"]]
    assert [] == fake.hospitals
    assert [] == (await client.get("/hospitals/bulk")).json()["jobs"]


async def test_validate_a_good_file(client: httpx.AsyncClient) -> None:
    """A clean file is `valid` with every row counted."""
    response = await client.post("/hospitals/bulk/validate", files=upload(csv_bytes(records(5))))

    body = response.json()
    assert (True, 5, 5, [], True) == (
        body["valid"],
        body["total_rows"],
        body["valid_rows"],
        body["errors"],
        body["has_header"],
    )


async def test_validate_refuses_oversized_and_missing_files(
    client: httpx.AsyncClient, settings: ServiceSettings
) -> None:
    """Validation has the upload's limits: 413 over the size, 422 without a file."""
    too_big = upload(b"x" * (settings.max_upload_bytes + 1))

    assert 413 == (await client.post("/hospitals/bulk/validate", files=too_big)).status_code
    assert 422 == (await client.post("/hospitals/bulk/validate")).status_code
