"""The stand-in Hospital Directory as a real server: uvicorn, a socket, the admin API.

The upstream's semantics are the contract suite's business (it runs against the
stand-in too); here is what only a real server shows: faults that break real
connections, rate limits per client address, latency, settings from the
environment, and the admin endpoints that drive it all over HTTP.
"""

# The house style is `assert expected == actual`, which ruff's SIM300 calls yoda.

from __future__ import annotations

import signal
import time
from collections.abc import AsyncIterator, Iterator
from uuid import UUID, uuid4

import anyio
import httpx
import pytest

from hospital_bulk import (
    HospitalRecord,
    HttpDirectoryClient,
    MaybeLandedError,
    NotSentError,
    RateLimit,
    RejectedError,
    ThrottledError,
)
from hospital_bulk.testing import FakeDirectory, Fault
from hospital_bulk_standin import (
    create_directory_app,
    directory_app_from_env,
    parse_rate_limit,
)
from tests.servers import UvicornServer

pytestmark = pytest.mark.anyio

APP = "hospital_bulk_standin.app:app"
RECORD = HospitalRecord("General Hospital", "1 Main Street", "555-0100")
# Every setting spelled out, so that the developer's own environment cannot leak in.
DEFAULTS = {
    "HOSPITAL_DIRECTORY_LATENCY": "0",
    "HOSPITAL_DIRECTORY_CREATE_LIMIT": "30/60",
    "HOSPITAL_DIRECTORY_OTHER_LIMIT": "50/60",
    "HOSPITAL_DIRECTORY_ADMIN": "1",
}
SLOW_AND_TIGHT = {
    **DEFAULTS,
    "HOSPITAL_DIRECTORY_LATENCY": "0.5",
    "HOSPITAL_DIRECTORY_CREATE_LIMIT": "2/60",
    "HOSPITAL_DIRECTORY_OTHER_LIMIT": "0",
}


@pytest.fixture(name="standin", scope="module")
def fixture_standin() -> Iterator[UvicornServer]:
    """The stand-in as the command line runs it, with the upstream's limits; no latency."""
    with UvicornServer(APP, env=DEFAULTS) as server:
        yield server


@pytest.fixture(name="slow_standin", scope="module")
def fixture_slow_standin() -> Iterator[UvicornServer]:
    """A stand-in configured by the environment: 0.5 s creates, 2 creates a minute."""
    with UvicornServer(APP, env=SLOW_AND_TIGHT) as server:
        yield server


@pytest.fixture(name="http")
async def fixture_http(standin: UvicornServer) -> AsyncIterator[httpx.AsyncClient]:
    """Raw HTTP to a freshly reset stand-in."""
    async with httpx.AsyncClient(base_url=standin.url) as http:
        assert 204 == (await http.post("/_standin/reset")).status_code
        yield http


@pytest.fixture(name="slow_http")
async def fixture_slow_http(slow_standin: UvicornServer) -> AsyncIterator[httpx.AsyncClient]:
    """Raw HTTP to the slow stand-in, freshly reset (its rate-limit windows included)."""
    async with httpx.AsyncClient(base_url=slow_standin.url) as http:
        assert 204 == (await http.post("/_standin/reset")).status_code
        yield http


@pytest.fixture(name="client")
async def fixture_client(
    standin: UvicornServer, http: httpx.AsyncClient
) -> AsyncIterator[HttpDirectoryClient]:
    """The library's client of the reset stand-in, as the engine uses it."""
    async with HttpDirectoryClient(standin.url) as client:
        yield client


@pytest.fixture(name="batch_id")
def fixture_batch_id() -> UUID:
    return uuid4()


def body(batch_id: UUID, name: str = "General Hospital") -> dict[str, object]:
    return {"name": name, "address": "1 Main Street", "creation_batch_id": str(batch_id)}


async def inject(http: httpx.AsyncClient, fault: Fault, **rule: object) -> None:
    response = await http.post("/_standin/faults", json={"fault": fault.value, **rule})
    assert 201 == response.status_code, response.text


# Faults, over a real socket.


@pytest.mark.parametrize(
    ("fault", "error", "stored"),
    [
        (Fault.REJECT, RejectedError, 0),
        (Fault.THROTTLE, ThrottledError, 0),
        (Fault.FAIL_BEFORE_STORING, MaybeLandedError, 0),
        (Fault.ERROR_AFTER_STORING, MaybeLandedError, 1),
        (Fault.FAIL_AFTER_STORING, MaybeLandedError, 1),
        # Over a socket the server can only drop a request it has read: a lost answer.
        (Fault.NOT_SENT, MaybeLandedError, 0),
    ],
)
async def test_each_fault_reaches_the_client_as_its_class(
    client: HttpDirectoryClient,
    http: httpx.AsyncClient,
    batch_id: UUID,
    fault: Fault,
    error: type[Exception],
    stored: int,
) -> None:
    """Injected over HTTP, each fault gives HttpDirectoryClient the failure it stands for,
    and the hospital is stored exactly when the fault says so."""
    await inject(http, fault)

    with pytest.raises(error):
        await client.create_hospital(RECORD, batch_id)

    assert stored == len(await client.list_batch(batch_id))


async def test_a_throttle_fault_is_the_upstreams_429(
    client: HttpDirectoryClient, http: httpx.AsyncClient, batch_id: UUID
) -> None:
    """THROTTLE answers the upstream's 429: its body, no Retry-After."""
    await inject(http, Fault.THROTTLE, times=2)

    response = await http.post("/hospitals/", json=body(batch_id))
    with pytest.raises(ThrottledError) as caught:
        await client.create_hospital(RECORD, batch_id)

    assert (429, {"error": "Rate limit exceeded: 30 per 1 minute"}) == (
        response.status_code,
        response.json(),
    )
    assert "retry-after" not in response.headers
    assert None is caught.value.retry_after


async def test_fail_after_storing_cuts_the_answer_mid_body(
    http: httpx.AsyncClient, batch_id: UUID
) -> None:
    """The hospital is stored, then a 200 starts, promising more body than ever comes:
    the client sees a broken response, not an answer."""
    await inject(http, Fault.FAIL_AFTER_STORING)

    with pytest.raises(httpx.RemoteProtocolError, match="complete message body"):
        await http.post("/hospitals/", json=body(batch_id))

    assert 1 == len((await http.get(f"/hospitals/batch/{batch_id}")).json())


async def test_not_sent_closes_the_connection_unanswered(
    http: httpx.AsyncClient, batch_id: UUID
) -> None:
    """NOT_SENT drops the connection without a byte of answer; nothing is stored."""
    await inject(http, Fault.NOT_SENT)

    with pytest.raises(httpx.RemoteProtocolError, match="without sending a response"):
        await http.post("/hospitals/", json=body(batch_id))

    assert 404 == (await http.get(f"/hospitals/batch/{batch_id}")).status_code


async def test_a_lost_activation_still_activated(
    client: HttpDirectoryClient, http: httpx.AsyncClient, batch_id: UUID
) -> None:
    """Faults reach every operation: a cut activation answer, yet the batch is active."""
    await client.create_hospital(RECORD, batch_id)
    await inject(http, Fault.FAIL_AFTER_STORING, operation="activate")

    with pytest.raises(MaybeLandedError):
        await client.activate_batch(batch_id)

    assert [True] == [h.active for h in await client.list_batch(batch_id)]


async def test_a_named_rule_waits_for_its_hospital(
    client: HttpDirectoryClient, http: httpx.AsyncClient, batch_id: UUID
) -> None:
    """``name`` and ``times`` travel over HTTP: only the named creates fail, twice."""
    await inject(http, Fault.REJECT, name="Target", times=2)
    outcomes = []

    for name in ["Other", "Target", "Target", "Target"]:
        try:
            await client.create_hospital(HospitalRecord(name, "1 Main Street"), batch_id)
        except RejectedError:
            outcomes.append("rejected")
        else:
            outcomes.append("ok")

    assert ["ok", "rejected", "rejected", "ok"] == outcomes


# The admin endpoints.


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ({"fault": "explode"}, "fault must be one of"),
        ({"fault": "reject", "operation": "upsert"}, "operation must be one of"),
        ({"fault": "reject", "times": 0}, "times must be at least 1"),
        ({"fault": "reject", "times": "2"}, "times must be an integer"),
        ({"fault": "reject", "operation": "list", "name": "X"}, "name only selects creates"),
        ([], "a JSON object"),
    ],
    ids=["fault", "operation", "times", "times-type", "name", "not-an-object"],
)
async def test_a_rule_that_could_never_apply_is_a_422(
    http: httpx.AsyncClient, rule: object, message: str
) -> None:
    """A typo in a rule fails loudly, with the reason, instead of never firing."""
    response = await http.post("/_standin/faults", json=rule)

    assert 422 == response.status_code
    assert message in response.json()["detail"]


async def test_a_rule_is_echoed_with_its_defaults(http: httpx.AsyncClient) -> None:
    """Only ``fault`` is required: the answer shows the rule as it will apply."""
    response = await http.post("/_standin/faults", json={"fault": "throttle"})

    expected = {"fault": "throttle", "operation": "create", "times": 1, "name": None, "seconds": 0}
    assert (201, expected) == (response.status_code, response.json())


async def test_a_held_create_lands_after_its_hold(http: httpx.AsyncClient, batch_id: UUID) -> None:
    """``hold``: the create is stored and answered only after ``seconds``."""
    rule = await http.post("/_standin/faults", json={"fault": "hold", "seconds": 1})
    answers: list[httpx.Response] = []

    async def create() -> None:
        answers.append(await http.post("/hospitals/", json=body(batch_id)))

    async with anyio.create_task_group() as group:
        group.start_soon(create)
        await anyio.sleep(0.2)
        during = await http.get(f"/hospitals/batch/{batch_id}")

    after = await http.get(f"/hospitals/batch/{batch_id}")
    assert (201, 200) == (rule.status_code, answers[0].status_code)
    assert 404 == during.status_code  # an empty batch is the upstream's 404
    assert 1 == len(after.json())


async def test_an_outage_answers_503_and_stores_nothing(
    http: httpx.AsyncClient, batch_id: UUID
) -> None:
    """``POST /_standin/outage``: every call is a 503 for that long; 0 ends it."""
    down = await http.post("/_standin/outage", json={"seconds": 60})
    refused = await http.post("/hospitals/", json=body(batch_id))
    await http.post("/_standin/outage", json={"seconds": 0})
    created = await http.post("/hospitals/", json=body(batch_id))
    bad = await http.post("/_standin/outage", json={"seconds": -1})

    assert (201, 503, 200, 422) == (
        down.status_code,
        refused.status_code,
        created.status_code,
        bad.status_code,
    )
    assert 1 == len((await http.get(f"/hospitals/batch/{batch_id}")).json())


async def test_clearing_faults_makes_the_stand_in_healthy(
    http: httpx.AsyncClient, batch_id: UUID
) -> None:
    """DELETE /_standin/faults forgets the rules not used up yet."""
    await inject(http, Fault.REJECT, times=5)

    cleared = await http.delete("/_standin/faults")
    created = await http.post("/hospitals/", json=body(batch_id))

    assert (204, 200) == (cleared.status_code, created.status_code)


async def test_stats_count_calls_429s_faults_and_hospitals(
    http: httpx.AsyncClient, batch_id: UUID
) -> None:
    """GET /_standin/stats: what the stand-in has seen since the last reset."""
    await inject(http, Fault.THROTTLE)
    for _ in range(2):
        await http.post("/hospitals/", json=body(batch_id))
    await http.get(f"/hospitals/batch/{batch_id}")
    await http.get("/")

    stats = (await http.get("/_standin/stats")).json()

    expected = {
        "calls": {"create": 2, "list": 1, "ping": 1},
        "throttled": 1,
        "faults": 1,
        "creates_in_flight": 0,
        "max_creates_in_flight": 1,
        "hospitals": 1,
        "chaos": {},
    }
    assert expected == stats


async def test_reset_starts_afresh_like_a_restart(http: httpx.AsyncClient, batch_id: UUID) -> None:
    """After POST /_standin/reset the directory is empty and ids count from 1 again."""
    for name in ["First", "Second"]:
        await http.post("/hospitals/", json=body(batch_id, name))

    await http.post("/_standin/reset")
    created = await http.post("/hospitals/", json=body(batch_id, "Third"))

    assert 1 == created.json()["id"]
    assert ["Third"] == [h["name"] for h in (await http.get("/hospitals/")).json()]


async def test_without_admin_the_prefix_is_the_upstreams_404() -> None:
    """``admin=False`` serves the upstream only: /_standin/ is unknown there."""
    transport = httpx.ASGITransport(app=create_directory_app(admin=False))
    async with httpx.AsyncClient(transport=transport, base_url="http://standin.test") as http:
        response = await http.get("/_standin/stats")

    assert (404, {"detail": "Not Found"}) == (response.status_code, response.json())


# The upstream's shape over the socket.


async def test_a_wrong_trailing_slash_is_redirected(
    standin: UvicornServer, http: httpx.AsyncClient, batch_id: UUID
) -> None:
    """POST /hospitals and GET /hospitals/batch/{id}/ get a 307 to the exact path."""
    create = await http.post("/hospitals", json=body(batch_id))
    listing = await http.get(f"/hospitals/batch/{batch_id}/")

    assert [307, 307] == [create.status_code, listing.status_code]
    assert f"{standin.url}/hospitals/" == create.headers["location"]
    assert f"{standin.url}/hospitals/batch/{batch_id}" == listing.headers["location"]


async def test_answers_carry_the_upstreams_headers(http: httpx.AsyncClient, batch_id: UUID) -> None:
    """JSON answers say so and give their length; a deleted hospital is a bare 204."""
    created = await http.post("/hospitals/", json=body(batch_id))
    deleted = await http.delete(f"/hospitals/{created.json()['id']}")

    assert "application/json" == created.headers["content-type"]
    assert str(len(created.content)) == created.headers["content-length"]
    assert (204, b"") == (deleted.status_code, deleted.content)


# Limits and latency, from the environment.


async def test_each_client_address_has_its_own_rate_limit(
    slow_standin: UvicornServer, slow_http: httpx.AsyncClient, batch_id: UUID
) -> None:
    """With ``2/60``, three creates at once from one address: two land, one gets the
    upstream's 429 (no Retry-After); another address still has its own two."""
    other_address = httpx.AsyncHTTPTransport(local_address="127.0.0.2")
    answers: list[httpx.Response] = []

    async def create(http: httpx.AsyncClient, name: str) -> None:
        answers.append(await http.post("/hospitals/", json=body(batch_id, name)))

    async with (
        httpx.AsyncClient(transport=other_address, base_url=slow_standin.url) as other,
        anyio.create_task_group() as group,
    ):
        for n in range(3):
            group.start_soon(create, slow_http, f"Here {n}")
        group.start_soon(create, other, "Elsewhere")

    throttled = [a for a in answers if a.status_code == 429]
    assert [200, 200, 200, 429] == sorted(a.status_code for a in answers)
    assert {"error": "Rate limit exceeded: 2 per 1 minute"} == throttled[0].json()
    assert "retry-after" not in throttled[0].headers
    assert 3 == len((await slow_http.get(f"/hospitals/batch/{batch_id}")).json())


async def test_latency_slows_creates_only(slow_http: httpx.AsyncClient, batch_id: UUID) -> None:
    """``HOSPITAL_DIRECTORY_LATENCY=0.5``: a create takes half a second, a ping does not."""
    started = time.perf_counter()
    await slow_http.post("/hospitals/", json=body(batch_id))
    create_took = time.perf_counter() - started
    started = time.perf_counter()
    await slow_http.get("/")
    ping_took = time.perf_counter() - started

    assert create_took >= 0.5
    assert ping_took < 0.5


def test_the_environment_configures_the_app() -> None:
    """Each variable sets its knob; an unset one keeps the upstream's value."""
    app = directory_app_from_env(
        {"HOSPITAL_DIRECTORY_LATENCY": "5", "HOSPITAL_DIRECTORY_CREATE_LIMIT": "0"}
    )

    directory = app.directory
    assert (5.0, None, RateLimit(50, 60.0), "fixed", True) == (
        directory.latency,
        directory.create_limit,
        directory.other_limit,
        directory.limit_mode,
        app.admin,
    )


def test_the_environment_chooses_a_sliding_limiter() -> None:
    """``HOSPITAL_DIRECTORY_LIMIT_MODE=sliding`` (any case) makes the limits sliding logs."""
    app = directory_app_from_env({"HOSPITAL_DIRECTORY_LIMIT_MODE": " Sliding "})

    assert "sliding" == app.directory.limit_mode


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30/60", RateLimit(30, 60.0)),
        ("2/1", RateLimit(2, 1.0)),
        ("30", RateLimit(30, 60.0)),
        (" 5/0.5 ", RateLimit(5, 0.5)),
        ("0", None),
        ("none", None),
        ("", None),
    ],
)
def test_rate_limits_are_count_per_seconds(text: str, expected: RateLimit | None) -> None:
    """``COUNT/SECONDS``, ``COUNT`` (per minute), or ``0``/``none`` for no limit."""
    assert expected == parse_rate_limit(text)


@pytest.mark.parametrize("text", ["lots", "30/", "-1/60", "30/0", "30/inf", "3.5/60"])
def test_a_malformed_rate_limit_is_refused(text: str) -> None:
    """Anything else is a ValueError saying what a limit looks like."""
    with pytest.raises(ValueError, match="COUNT/SECONDS"):
        parse_rate_limit(text)


@pytest.mark.parametrize(
    "env",
    [
        {"HOSPITAL_DIRECTORY_CREATE_LIMIT": "lots"},
        {"HOSPITAL_DIRECTORY_OTHER_LIMIT": "50/"},
        {"HOSPITAL_DIRECTORY_LATENCY": "-1"},
        {"HOSPITAL_DIRECTORY_ADMIN": "maybe"},
        {"HOSPITAL_DIRECTORY_LIMIT_MODE": "leaky"},
    ],
)
def test_a_bad_setting_names_its_variable(env: dict[str, str]) -> None:
    """A malformed variable stops the app from loading, and the error says which."""
    [name] = env

    with pytest.raises(ValueError, match=name):
        directory_app_from_env(env)


def test_a_server_that_cannot_start_fails_with_its_output() -> None:
    """UvicornServer raises with what the server printed when it dies before serving."""
    server = UvicornServer("tests.adapters.no_such_module:app")

    with pytest.raises(RuntimeError, match="exited with") as caught, server:
        pass

    assert "no_such_module" in str(caught.value)


def test_an_app_for_a_given_directory_takes_no_knobs() -> None:
    """Latency and limits belong to the FakeDirectory passed in: passing both is an error."""
    with pytest.raises(ValueError, match="configure the FakeDirectory"):
        create_directory_app(FakeDirectory(), latency=1.0)


# Crashes and restarts, as the end-to-end tests will use them.


async def test_a_killed_stand_in_refuses_and_a_restarted_one_is_empty(batch_id: UUID) -> None:
    """kill -9: connections are refused (NotSentError); on restart, same URL, ids from 1."""
    with UvicornServer(APP, env=DEFAULTS) as server:
        async with HttpDirectoryClient(server.url) as client:
            await client.create_hospital(RECORD, batch_id)
            server.kill()
            killed = server.process
            with pytest.raises(NotSentError):
                await client.ping()
            server.restart()
            restarted = await client.create_hospital(RECORD, batch_id)

    assert (-signal.SIGKILL, 1) == (killed.returncode, restarted.id)


# What the stand-in needed from the fake.


async def test_a_create_in_flight_across_a_reset_is_lost(batch_id: UUID) -> None:
    """A reset is a restart: the slow create it interrupts is not stored, and its caller
    sees a lost answer."""
    fake = FakeDirectory(latency=0.2)

    async def reset_soon() -> None:
        await anyio.sleep(0.05)
        fake.reset()

    async with anyio.create_task_group() as group:
        group.start_soon(reset_soon)
        with pytest.raises(MaybeLandedError):
            await fake.create_hospital(RECORD, batch_id)

    assert ([], 0) == (fake.hospitals, fake.stats.creates_in_flight)


async def test_error_after_storing_in_process(batch_id: UUID) -> None:
    """ERROR_AFTER_STORING: MaybeLandedError with the 500, and the hospital is there."""
    fake = FakeDirectory()
    fake.inject(Fault.ERROR_AFTER_STORING)

    with pytest.raises(MaybeLandedError) as caught:
        await fake.create_hospital(RECORD, batch_id)

    assert (500, 1) == (caught.value.status, len(fake.batch(batch_id)))


async def test_the_http_face_keeps_one_window_per_client(batch_id: UUID) -> None:
    """``http_handler(request, client=...)``: each client gets its own rate limit."""
    fake = FakeDirectory(create_limit=RateLimit(1, 60.0))
    request = httpx.Request("POST", "http://directory.test/hospitals/", json=body(batch_id))

    statuses = [
        (await fake.http_handler(request, client=client)).status_code
        for client in ["10.0.0.1", "10.0.0.2", "10.0.0.1"]
    ]

    assert [200, 200, 429] == statuses


# Chaos: random faults, seeded, switched on by the environment or over HTTP.


def test_the_environment_starts_a_chaos_mode() -> None:
    """``HOSPITAL_DIRECTORY_CHAOS`` and ``_SEED`` start a chaos mode; unset, there is none."""
    env = {
        "HOSPITAL_DIRECTORY_CHAOS": "throttle=0.1, hold=0.05:3, outage=0.1:20",
        "HOSPITAL_DIRECTORY_CHAOS_SEED": "42",
    }

    chaos = directory_app_from_env(env).directory.chaos

    assert chaos is not None
    assert ("throttle=0.1,hold=0.05:3,outage=0.1:20", 42) == (chaos.describe(), chaos.seed)
    assert directory_app_from_env({}).directory.chaos is None


@pytest.mark.parametrize(
    "env",
    [
        {"HOSPITAL_DIRECTORY_CHAOS": "flood=0.1"},
        {"HOSPITAL_DIRECTORY_CHAOS": "throttle=0.1", "HOSPITAL_DIRECTORY_CHAOS_SEED": "x"},
    ],
)
def test_a_bad_chaos_setting_names_its_variable(env: dict[str, str]) -> None:
    name = list(env)[-1]

    with pytest.raises(ValueError, match=name):
        directory_app_from_env(env)


async def test_chaos_over_http(http: httpx.AsyncClient, batch_id: UUID) -> None:
    """PUT /_standin/chaos starts one, GET shows it, DELETE ends it; stats count it."""
    put = await http.put("/_standin/chaos", json={"chaos": "fail_before_storing=1", "seed": 3})
    shown = await http.get("/_standin/chaos")
    during = await http.post("/hospitals/", json=body(batch_id))
    stats = (await http.get("/_standin/stats")).json()
    ended = await http.delete("/_standin/chaos")
    after = await http.post("/hospitals/", json=body(batch_id))
    bad = await http.put("/_standin/chaos", json={"chaos": "throttle=2"})

    expected = {"chaos": "fail_before_storing=1", "seed": 3}
    assert (200, expected) == (put.status_code, put.json())
    assert expected == shown.json()
    assert (500, 200, 204) == (during.status_code, after.status_code, ended.status_code)
    assert ({"fail_before_storing": 1}, 1) == (stats["chaos"], stats["faults"])
    assert {"chaos": None, "seed": None} == (await http.get("/_standin/chaos")).json()
    assert 422 == bad.status_code


async def test_a_stand_in_started_in_chaos_breaks_connections() -> None:
    """The variables reach a real server: every create is answered, then cut mid-body."""
    env = {**DEFAULTS, "HOSPITAL_DIRECTORY_CHAOS": "fail_after_storing=1"}
    with UvicornServer(APP, env=env) as server:
        async with HttpDirectoryClient(server.url) as client:
            with pytest.raises(MaybeLandedError):
                await client.create_hospital(RECORD, uuid4())
        async with httpx.AsyncClient(base_url=server.url) as http:
            stats = (await http.get("/_standin/stats")).json()

    assert ({"fail_after_storing": 1}, 1) == (stats["chaos"], stats["hospitals"])
