"""The service as a whole: settings, lifespan, recovery, shutdown, health, OpenAPI."""

from __future__ import annotations

import json
import subprocess
import sys
from contextlib import aclosing
from typing import Any

import anyio
import attrs
import httpx
import pytest
from pydantic import ValidationError

from hospital_bulk import (
    BulkProcessor,
    JobState,
    MemoryStore,
    RateLimit,
    StoreError,
)
from hospital_bulk.testing import FakeDirectory
from hospital_bulk_fastapi import ServiceSettings, create_app
from tests.helpers import UNPACED, csv_bytes, records

from .support import BASE_URL, serve, settled, upload

pytestmark = pytest.mark.anyio

ENV = {
    "HOSPITAL_API_BASE": "http://directory.test:9000",
    "HOSPITAL_BULK_STORE": "memory://",
    "HOSPITAL_BULK_RATE_LIMIT": "12",
    "HOSPITAL_BULK_RATE_WINDOW": "30",
    "HOSPITAL_BULK_CONCURRENCY": "7",
    "HOSPITAL_BULK_MAX_ROWS": "99",
    "HOSPITAL_BULK_MAX_UPLOAD_BYTES": "1000",
    "HOSPITAL_BULK_SYNC_TIMEOUT": "4.5",
    "HOSPITAL_BULK_EMBEDDED_LATENCY": "0.25",
}


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every variable lands in its field, and the engine's settings follow."""
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)

    settings = ServiceSettings()
    engine = settings.processor_settings()

    assert ("http://directory.test:9000", "memory://", 1000, 4.5, 0.25, False) == (
        settings.api_base,
        settings.store,
        settings.max_upload_bytes,
        settings.sync_timeout,
        settings.embedded_latency,
        settings.embedded,
    )
    assert (RateLimit(12, 30.0), 7, 99) == (
        engine.create_limit,
        engine.concurrency,
        engine.csv.max_rows,
    )


def test_a_rate_limit_of_zero_is_unpaced() -> None:
    """HOSPITAL_BULK_RATE_LIMIT=0: neither creates nor other calls are paced."""
    engine = ServiceSettings(rate_limit=0, store="memory://").processor_settings()

    assert (None, None) == (engine.create_limit, engine.other_limit)


@pytest.mark.parametrize(
    "changes",
    [
        {"api_base": "ftp://x"},
        {"api_base": "not a url"},
        {"rate_limit": -1},
        {"concurrency": 0},
        {"max_upload_bytes": 0},
    ],
)
def test_bad_settings_are_refused(changes: dict[str, object]) -> None:
    """Nonsense settings stop the service at start, with the field named."""
    with pytest.raises(ValidationError):
        ServiceSettings(store="memory://", **changes)  # type: ignore[arg-type]


def test_importing_the_server_module_opens_nothing() -> None:
    """`hospital_bulk_fastapi.main` builds the app without touching the store or network.

    The store URL names a directory that cannot exist: only opening it would fail.
    """
    env = {"HOSPITAL_BULK_STORE": "sqlite:////nonexistent/dir/jobs.sqlite3", "PATH": ""}
    code = "import hospital_bulk_fastapi.main as m; print(m.app.title)"

    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )

    assert (0, "Hospital Bulk Processor") == (result.returncode, result.stdout.strip())


async def test_the_embedded_mode_runs_without_a_directory() -> None:
    """HOSPITAL_API_BASE=embedded: the lifespan builds a fake directory; uploads complete."""
    settings = ServiceSettings(
        api_base="embedded", embedded_latency=0.001, store="memory://", rate_limit=0
    )
    async with serve(create_app(settings)) as client:
        response = await client.post("/hospitals/bulk", files=upload(csv_bytes(records(3))))
        ready = await client.get("/readyz")

    assert (200, "completed") == (response.status_code, response.json()["state"])
    assert (200, {"status": "ok"}) == (ready.status_code, ready.json())


async def test_an_unknown_store_url_fails_the_start() -> None:
    """A store URL of no known scheme stops the lifespan with the reason."""
    app = create_app(ServiceSettings(api_base="embedded", store="bogus://x"))

    with pytest.raises(ValueError, match="unknown store URL"):
        async with app.router.lifespan_context(app):
            pass  # pragma: no cover


async def test_shutdown_interrupts_running_jobs(settings: ServiceSettings) -> None:
    """Jobs still running at shutdown are cancelled and recorded `interrupted`."""
    processor = BulkProcessor(FakeDirectory(latency=5.0), settings=UNPACED)
    async with serve(create_app(settings, processor=processor)) as client:
        accepted = await client.post(
            "/hospitals/bulk", files=upload(csv_bytes(records(2))), params={"mode": "async"}
        )
        batch_id = accepted.json()["batch_id"]
        with anyio.fail_after(5):
            async with aclosing(processor.watch(batch_id)) as events:  # type: ignore[type-var]
                async for event in events:
                    if event.state is JobState.RUNNING:
                        break

    assert JobState.INTERRUPTED == (await processor.get(batch_id)).job.state


async def test_start_up_marks_jobs_of_dead_processes_interrupted(
    settings: ServiceSettings, fake: FakeDirectory
) -> None:
    """With HOSPITAL_BULK_RESUME_ON_START off, a job left `running` by a dead process (its
    lease expired) is `interrupted` once the service has started, and a resume finishes it."""
    store = MemoryStore()
    first = BulkProcessor(fake, store, UNPACED)
    job = await first.submit(csv_bytes(records(2)))
    await store.transition(job.id, JobState.RUNNING, owner="gone:1:x", lease=-1.0)

    app = create_app(
        settings.model_copy(update={"resume_on_start": False}),
        processor=BulkProcessor(fake, store, UNPACED),
    )
    async with serve(app) as client:
        status = (await client.get(f"/bulk/status/{job.id}")).json()
        resumed = await client.post(f"/hospitals/bulk/{job.id}/resume")

    assert "interrupted" == status["state"]
    assert (200, "completed") == (resumed.status_code, resumed.json()["state"])


async def test_start_up_resumes_what_a_stop_or_a_dead_process_left(
    settings: ServiceSettings, fake: FakeDirectory
) -> None:
    """By default the service starts, at start-up, a job left `running` by a dead process,
    one left `interrupted` and one left `pending` longer than a lease: all complete by
    themselves, each row upstream once."""
    store = MemoryStore()
    first = BulkProcessor(fake, store, attrs.evolve(UNPACED, lease_ttl=0.1))
    dead = await first.submit(csv_bytes(records(2, prefix="Dead")))
    await store.transition(dead.id, JobState.RUNNING, owner="gone:1:x", lease=-1.0)
    stopped = await first.submit(csv_bytes(records(2, prefix="Stopped")))
    await store.transition(stopped.id, JobState.RUNNING, owner="gone:1:x", lease=60)
    await store.transition(stopped.id, JobState.INTERRUPTED, owner="gone:1:x")
    pending = await first.submit(csv_bytes(records(2, prefix="Pending")))
    await anyio.sleep(0.2)

    app = create_app(settings, processor=BulkProcessor(fake, store, first.settings))
    async with serve(app):
        with anyio.fail_after(10):
            for job in (dead, stopped, pending):
                async with aclosing(first.watch(job.id)) as events:  # type: ignore[type-var]
                    async for _ in events:
                        pass

    states = [(await store.get_job(job.id)).state for job in (dead, stopped, pending)]
    assert [JobState.COMPLETED] * 3 == states
    assert 6 == len(fake.hospitals)
    assert 6 == len({hospital.record().key() for hospital in fake.hospitals})


class BrokenStore(MemoryStore):
    async def ping(self) -> None:
        raise StoreError("disk on fire")


async def test_readyz_is_503_when_the_store_does_not_answer(
    settings: ServiceSettings, fake: FakeDirectory
) -> None:
    """readyz asks the store; healthz only says the process lives."""
    app = create_app(settings, processor=BulkProcessor(fake, BrokenStore(), UNPACED))
    async with serve(app) as client:
        ready = await client.get("/readyz")
        alive = await client.get("/healthz")

    assert (503, "unavailable") == (ready.status_code, ready.json()["status"])
    assert "disk on fire" in ready.json()["detail"]
    assert (200, {"status": "ok"}) == (alive.status_code, alive.json())


async def test_without_a_lifespan_the_service_starts_on_first_use(
    settings: ServiceSettings,
) -> None:
    """No lifespan ran (a bare ASGI transport): the first request starts the service,
    which then answers like a started one."""
    app = create_app(settings)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url=BASE_URL
    ) as client:
        status = await client.get("/bulk/status/x")
        ready = await client.get("/readyz")

    assert (404, "job_not_found") == (status.status_code, status.json()["code"])
    assert 200 == ready.status_code


async def test_a_store_failure_is_503(settings: ServiceSettings, fake: FakeDirectory) -> None:
    """StoreError from any route: 503 `store_unavailable` with Retry-After."""

    class FailingReads(MemoryStore):
        async def list_jobs(self, *, limit: int = 50, offset: int = 0) -> list:  # type: ignore[type-arg]
            raise StoreError("locked")

    app = create_app(settings, processor=BulkProcessor(fake, FailingReads(), UNPACED))
    async with serve(app) as client:
        response = await client.get("/hospitals/bulk")

    assert (503, "store_unavailable", "5") == (
        response.status_code,
        response.json()["code"],
        response.headers["retry-after"],
    )


async def test_openapi_documents_every_operation(client: httpx.AsyncClient) -> None:
    """Every operation has a summary and an error model; FastAPI's own 422 shape is gone."""
    schema = (await client.get("/openapi.json")).json()
    docs = await client.get("/docs")

    operations = [op for path in schema["paths"].values() for op in path.values()]
    assert 11 == len(operations)
    assert all(op.get("summary") for op in operations)
    assert "HTTPValidationError" not in json.dumps(schema)
    for path, item in schema["paths"].items():
        for operation in item.values():
            for status, response in operation["responses"].items():
                if status.startswith(("4", "5")):
                    assert ["application/json"] == list(response["content"]), (path, status)
    assert 200 == docs.status_code


async def test_openapi_documents_the_upload_options_and_the_reused_key(
    client: httpx.AsyncClient,
) -> None:
    """Upload and validate take `encoding` and `delimiter` in the query; the upload's 422
    shows both of its codes, the reused Idempotency-Key among them."""
    schema = (await client.get("/openapi.json")).json()
    upload = schema["paths"]["/hospitals/bulk"]["post"]
    validate = schema["paths"]["/hospitals/bulk/validate"]["post"]

    for operation in (upload, validate):
        query = {p["name"] for p in operation["parameters"] if p["in"] == "query"}
        assert {"encoding", "delimiter"} <= query
    examples = upload["responses"]["422"]["content"]["application/json"]["examples"]
    assert {"idempotency_key_reused", "invalid_request"} == set(examples)
    assert "Idempotency-Key" in upload["responses"]["422"]["description"]


async def test_unknown_routes_and_methods_use_the_error_shape(client: httpx.AsyncClient) -> None:
    """404 and 405 from routing answer `{detail, code}` too."""
    missing = await client.get("/no/such/thing")
    wrong = await client.put("/healthz")

    assert (404, "not_found") == (missing.status_code, missing.json()["code"])
    assert (405, "method_not_allowed") == (wrong.status_code, wrong.json()["code"])
    assert "GET" in wrong.headers["allow"]


async def test_jobs_of_a_restarted_service_stay_readable(
    settings: ServiceSettings, fake: FakeDirectory
) -> None:
    """The store outlives one app: a second app on it reads the first one's jobs."""
    store = MemoryStore()
    async with serve(create_app(settings, processor=BulkProcessor(fake, store, UNPACED))) as one:
        batch_id = (await one.post("/hospitals/bulk", files=upload(csv_bytes(records(1))))).json()[
            "batch_id"
        ]
    async with serve(create_app(settings, processor=BulkProcessor(fake, store, UNPACED))) as two:
        assert "completed" == (await settled(two, batch_id))["state"]


class FailsMidway(MemoryStore):
    """Fails every save once ``failing`` is set, as a disk that fills up mid-job."""

    failing = False

    async def save(self, *args: Any, **kwargs: Any) -> Any:
        if self.failing:
            raise StoreError("database or disk is full")
        return await super().save(*args, **kwargs)


async def test_a_store_failure_mid_upload_names_the_job_and_invites_no_duplicate(
    settings: ServiceSettings,
) -> None:
    """The store fails after some hospitals were created: the answer names the job and
    its state, with no Retry-After. Doing what it says (follow the status, resume once
    the store is back), or retrying with the same Idempotency-Key, creates each row once."""
    fake = FakeDirectory(latency=0.01)
    store = FailsMidway()
    rows = records(40)
    processor = BulkProcessor(fake, store, attrs.evolve(UNPACED, concurrency=2))
    app = create_app(settings, processor=processor)
    file = upload(csv_bytes(rows))
    headers = {"Idempotency-Key": "upload-1"}

    async def fail_after_some() -> None:
        while len(fake.hospitals) < 10:  # noqa: ASYNC110 (the fake has no event for it)
            await anyio.sleep(0.001)
        store.failing = True

    async with serve(app) as client:
        async with anyio.create_task_group() as group:
            group.start_soon(fail_after_some)
            answer = await client.post(
                "/hospitals/bulk", files=upload(csv_bytes(rows)), headers=headers
            )
        body = answer.json()
        store.failing = False
        again = await client.post("/hospitals/bulk", files=file, headers=headers)
        status = (await client.get(f"/bulk/status/{body['batch_id']}")).json()
        if status["state"] != "completed":
            resumed = await client.post(f"/hospitals/bulk/{body['batch_id']}/resume")
            assert 200 == resumed.status_code, resumed.text
        final = await settled(client, body["batch_id"])

    assert (500, "store_failed_during_job") == (answer.status_code, body["code"])
    assert "Retry-After" not in answer.headers
    assert body["state"] in ("running", "interrupted", "queued")
    assert body["batch_id"] in body["detail"]
    assert "do not upload the file again" in body["detail"]
    assert body["batch_id"] == again.json()["batch_id"]
    assert "completed" == final["state"]
    assert 40 == len(fake.hospitals)
    assert 40 == len({hospital.record().key() for hospital in fake.hospitals})
