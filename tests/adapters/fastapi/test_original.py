"""The original service's own tests, in its own style: respx mocks the upstream at
HOSPITAL_API_BASE and Starlette's TestClient drives the app (the real HttpDirectoryClient)."""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import httpx
import pytest
import respx

from hospital_bulk_fastapi import ServiceSettings, create_app

with warnings.catch_warnings():
    # Starlette 1.x nudges towards httpx2; the TestClient works the same on httpx.
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

API = "http://hospital-directory.test"
CSV = b"General Hospital,1 Main St,555-0100\nCity Clinic,2 Side St,\n"


@pytest.fixture(name="upstream")
def fixture_upstream() -> Iterator[respx.MockRouter]:
    """The Hospital Directory, mocked: creates answer 201 with an id, activation 200."""
    with respx.mock(base_url=API, assert_all_called=False) as mock:
        mock.post("/hospitals/", name="create").mock(
            return_value=httpx.Response(201, json={"id": 101})
        )
        mock.patch(path__regex=r"^/hospitals/batch/[^/]+/activate$", name="activate").mock(
            return_value=httpx.Response(200, json={"activated_count": 2, "message": "ok"})
        )
        yield mock


@pytest.fixture(name="client")
def fixture_client(upstream: respx.MockRouter) -> Iterator[TestClient]:
    settings = ServiceSettings(api_base=API, store="memory://", rate_limit=0)
    with TestClient(create_app(settings)) as client:
        yield client


def test_bulk_create_flow_with_mocked_upstream(
    client: TestClient, upstream: respx.MockRouter
) -> None:
    """A headerless two-row CSV: 200, two hospitals created, none failed, batch activated."""
    response = client.post("/hospitals/bulk", files={"file": ("h.csv", CSV, "text/csv")})

    assert 200 == response.status_code
    body = response.json()
    assert 2 == body["total_hospitals"]
    assert 0 == body["failed_hospitals"]
    assert body["batch_activated"] is True
    assert (2, 1) == (upstream["create"].call_count, upstream["activate"].call_count)
    assert body["batch_id"] in upstream["create"].calls[0].request.content.decode()


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/bulk/status/{}"),
        ("POST", "/hospitals/bulk/{}/resume"),
        ("DELETE", "/hospitals/bulk/{}"),
    ],
)
def test_unknown_batch_is_404(client: TestClient, method: str, path: str) -> None:
    """Status, resume and delete of an unknown batch id are 404."""
    response = client.request(method, path.format("does-not-exist"))

    assert 404 == response.status_code
    assert "does-not-exist" in response.json()["detail"]


def test_validate_endpoint(client: TestClient) -> None:
    """Validation-only: row-level errors, nothing sent upstream."""
    content = b"name,address,phone\nGeneral Hospital,,555-0100\n"

    response = client.post("/hospitals/bulk/validate", files={"file": ("h.csv", content)})

    assert 200 == response.status_code
    assert (False, 1) == (response.json()["valid"], response.json()["errors"][0]["row"])


def test_websocket_progress_of_an_unknown_batch(client: TestClient) -> None:
    """The WebSocket of an unknown batch says so and closes with 4404."""
    with client.websocket_connect("/ws/progress/does-not-exist") as ws:
        message = ws.receive_json()
        closed = ws.receive()

    assert "job_not_found" == message["code"]
    assert (4404, "websocket.close") == (closed["code"], closed["type"])
