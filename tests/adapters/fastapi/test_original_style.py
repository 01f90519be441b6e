"""The original service's tests, in their own style, against our app: drop-in means these
pass with only the line that makes ``app`` changed.

Their style: a module-level ``TestClient(app)`` that is never entered (so no lifespan
runs: the service starts itself on first use), and respx in its default strict mode
mocking only what the happy path needs upstream: the create, answered 201 with
``{"id": 101}`` and nothing else, and the activation, answered 200
``{"activated": true}`` without a count.
"""

from __future__ import annotations

import tempfile
import warnings

import httpx
import pytest
import respx
from starlette.websockets import WebSocketDisconnect

from hospital_bulk import DEFAULT_BASE_URL
from hospital_bulk_fastapi import ServiceSettings, create_app

with warnings.catch_warnings():
    # Starlette 1.x nudges towards httpx2; the TestClient works the same on httpx.
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

# The original imported its module-level app; ours keeps its jobs in a scratch file.
app = create_app(ServiceSettings(store=f"sqlite:///{tempfile.mkdtemp()}/jobs.sqlite3"))
client = TestClient(app)

CSV = b"General Hospital,1 Main St,555-0100\nCity Clinic,2 Side St,\n"


def mock_upstream() -> tuple[respx.Route, respx.Route]:
    create = respx.post(f"{DEFAULT_BASE_URL}/hospitals/").mock(
        return_value=httpx.Response(201, json={"id": 101})
    )
    activate = respx.patch(url__regex=rf"^{DEFAULT_BASE_URL}/hospitals/batch/.+/activate$").mock(
        return_value=httpx.Response(200, json={"activated": True})
    )
    return create, activate


@respx.mock
def test_bulk_create_flow() -> None:
    """Two rows: 200, both created and activated, and upstream saw nothing but the two
    creates and the one activation (strict respx fails any other call)."""
    create, activate = mock_upstream()

    response = client.post("/hospitals/bulk", files={"file": ("h.csv", CSV, "text/csv")})

    assert response.status_code == 200
    body = response.json()
    assert body["total_hospitals"] == 2
    assert body["processed_hospitals"] == 2
    assert body["failed_hospitals"] == 0
    assert body["batch_activated"] is True
    assert [h["status"] for h in body["hospitals"]] == ["created_and_activated"] * 2
    assert (create.call_count, activate.call_count, respx.calls.call_count) == (2, 1, 3)


@respx.mock
def test_status_after_upload() -> None:
    """The job an upload made is there afterwards: the service outlives the request."""
    mock_upstream()
    batch_id = client.post("/hospitals/bulk", files={"file": ("h.csv", CSV)}).json()["batch_id"]

    response = client.get(f"/bulk/status/{batch_id}")

    assert response.status_code == 200
    assert response.json()["state"] == "completed"


def test_unknown_batch_is_404() -> None:
    """Status, resume and delete of an unknown batch id are 404; nothing goes upstream."""
    with respx.mock:
        assert client.get("/bulk/status/unknown").status_code == 404
        assert client.post("/hospitals/bulk/unknown/resume").status_code == 404
        assert client.delete("/hospitals/bulk/unknown").status_code == 404


def test_validate() -> None:
    """Validation only: a row without an address is reported, nothing goes upstream."""
    with respx.mock:
        response = client.post(
            "/hospitals/bulk/validate",
            files={"file": ("h.csv", b"name,address,phone\nGeneral Hospital,,555-0100\n")},
        )

    assert response.status_code == 200
    assert response.json()["valid"] is False
    assert response.json()["errors"][0]["row"] == 1


def test_websocket_without_a_lifespan_is_refused_clearly() -> None:
    """Without a lifespan, live progress is not relayed yet: the socket closes at once
    with 1013 and the reason, rather than hanging."""
    with (
        pytest.raises(WebSocketDisconnect) as refused,
        client.websocket_connect("/ws/progress/anything") as ws,
    ):
        ws.receive_json()

    assert refused.value.code == 1013
