"""The one implementation of the fake directory's semantics, behind both of its faces.

:class:`DirectoryCore` holds the state and runs every operation as the upstream
does, signalling its answers with :class:`Answer`, :class:`NotSent` and
:class:`Lost`; :class:`~hospital_bulk.testing.FakeDirectory` turns those into our exceptions (the
client face) or into HTTP responses (the HTTP face).
"""

from __future__ import annotations

import datetime as dt
import enum
import math
import re
import time
from collections import Counter
from collections.abc import Callable
from typing import Any, Literal, get_args
from uuid import UUID

import anyio
import attrs

from hospital_bulk._models import Hospital, RateLimit

Operation = Literal[
    "create",
    "list",
    "activate",
    "delete_batch",
    "delete_hospital",
    "ping",
    # Reached only over HTTP: GET /hospitals/, GET and PUT /hospitals/{id}.
    "list_all",
    "get_hospital",
    "update_hospital",
]
OPERATIONS: tuple[Operation, ...] = get_args(Operation)


class Fault(enum.Enum):
    """A failure :meth:`FakeDirectory.inject` makes calls suffer."""

    #: 400 with a reason, nothing stored: ``RejectedError``.
    REJECT = "reject"
    #: 429 without Retry-After, nothing stored: ``ThrottledError``.
    THROTTLE = "throttle"
    #: Connection refused, nothing stored: ``NotSentError`` (``httpx.ConnectError``).
    NOT_SENT = "not_sent"
    #: 500 before anything is stored: ``MaybeLandedError``.
    FAIL_BEFORE_STORING = "fail_before_storing"
    #: The call takes effect, then its answer is lost: ``MaybeLandedError``
    #: (``httpx.RemoteProtocolError`` over HTTP).
    FAIL_AFTER_STORING = "fail_after_storing"
    #: The call takes effect, then its answer is replaced by a 500: ``MaybeLandedError``.
    ERROR_AFTER_STORING = "error_after_storing"


@attrs.define
class DirectoryStats:
    """What a :class:`FakeDirectory` has seen.

    ``calls`` counts every call per operation (``calls["create"]``), failed ones
    included; ``throttled`` is how many 429s were answered and ``faults`` how many
    injected faults were suffered, all operations together;
    ``max_creates_in_flight`` is the most creates seen running at once.
    """

    calls: Counter[str] = attrs.Factory(Counter)
    throttled: int = 0
    faults: int = 0
    creates_in_flight: int = 0
    max_creates_in_flight: int = 0


class Answer(Exception):  # noqa: N818 - a signal inside the fake, not an error users see
    """An error answer: the HTTP face sends it, the client face raises from it."""

    def __init__(self, status: int, body: object) -> None:
        super().__init__(status, body)
        self.status = status
        self.body = body


class NotSent(Exception):  # noqa: N818 - a signal inside the fake
    """The connection was refused: nothing reached the directory."""


class Lost(Exception):  # noqa: N818 - a signal inside the fake
    """The call ran, then the connection broke before its answer."""


#: The rate-limit key of callers that do not say who they are: the in-process
#: fake has this one client; the HTTP face may pass each caller's address.
ONE_CLIENT = ""


@attrs.define
class _Rule:
    fault: Fault
    operation: str
    times: int
    name: str | None


@attrs.define
class _Window:
    """A fixed window that opens at the first request after the last one closed."""

    limit: RateLimit
    opened: float = -math.inf
    used: int = 0

    def admit(self, now: float) -> bool:
        if now >= self.opened + self.limit.window:
            self.opened, self.used = now, 0
        self.used += 1
        return self.used <= self.limit.count


UNPARSABLE = object()  # stands for an HTTP body that is not JSON


class DirectoryCore:
    """The state and semantics of :class:`~hospital_bulk.testing.FakeDirectory`.

    Each operation takes what an HTTP request carries (raw path parameters, the
    JSON body) so that validation, like everything else, is written once.
    """

    def __init__(
        self,
        *,
        latency: float = 0.0,
        batch_cap: int = 20,
        create_limit: RateLimit | None = None,
        other_limit: RateLimit | None = None,
        capacity: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.latency = latency
        self.batch_cap = batch_cap
        self.create_limit = create_limit
        self.other_limit = other_limit
        self.capacity = capacity
        self.stats = DirectoryStats()
        self._clock = clock
        self._store: dict[int, Hospital] = {}  # in creation order, so the oldest comes first
        self._batches: dict[UUID, dict[int, None]] = {}  # batch id -> member ids, in order
        self._next_id = 1
        self._rules: list[_Rule] = []
        self._windows: dict[tuple[str, str], _Window] = {}  # (client, operation) -> window
        # Bumped by reset(): a create in flight across it is lost, as in a restart.
        self._generation = 0

    def inject(
        self,
        fault: Fault,
        *,
        operation: Operation = "create",
        times: int = 1,
        name: str | None = None,
    ) -> None:
        """Make the next ``times`` calls of ``operation`` suffer ``fault``.

        With ``name`` (creates only), only creates of a hospital with that name
        count. Rules are checked in the order added and dropped once used up.
        """
        if operation not in OPERATIONS:
            raise ValueError(f"unknown operation {operation!r}; one of {OPERATIONS}")
        if times < 1:
            raise ValueError(f"times must be at least 1, not {times}")
        if name is not None and operation != "create":
            raise ValueError("name only selects creates")
        self._rules.append(_Rule(fault, operation, times, name))

    def clear_faults(self) -> None:
        """Forget every injected fault not used up yet: the directory is healthy again."""
        self._rules.clear()

    def reset(self) -> None:
        """Start afresh, as the upstream does when it restarts.

        Hospitals, the id counter (back to 1), faults, rate-limit windows and stats
        are all forgotten; a create still in flight is lost, its caller sees the
        connection break (``MaybeLandedError``) and nothing is stored.
        """
        self._store, self._batches, self._next_id = {}, {}, 1
        self._rules, self._windows = [], {}
        self.stats = DirectoryStats()
        self._generation += 1

    @property
    def hospitals(self) -> list[Hospital]:
        """Every stored hospital, by id."""
        return list(self._store.values())

    def batch(self, batch_id: UUID) -> list[Hospital]:
        """The stored hospitals of ``batch_id``, by id (no faults, limits or stats)."""
        return [self._store[i] for i in self._batches.get(batch_id, {})]

    def _gate(self, operation: str, name: str | None = None, client: str = ONE_CLIENT) -> _Gate:
        """What the upstream decides before its handler runs: faults, then rate limits.

        Each ``client`` has its own windows, as the upstream keys its limits by IP.
        """
        self.stats.calls[operation] += 1
        fault = self._take_fault(operation, name)
        if fault is not None:
            self.stats.faults += 1
        # These faults replace the call, limiter included, so that "the next call
        # fails" holds whatever the limits are.
        if fault is Fault.NOT_SENT:
            raise NotSent
        if fault is Fault.THROTTLE:
            raise self._throttled(operation)
        if fault is Fault.REJECT:
            raise Answer(400, {"detail": "Rejected (injected)"})
        if fault is Fault.FAIL_BEFORE_STORING:
            raise Answer(500, "Internal Server Error")
        gate = _Gate(fault)
        limit = self._limit(operation)
        if limit is not None:
            window = self._windows.setdefault((client, operation), _Window(limit))
            if not window.admit(self._clock()):
                raise self._throttled(operation) if gate.instead is None else gate.instead
        return gate

    def _take_fault(self, operation: str, name: str | None) -> Fault | None:
        for rule in self._rules:
            if rule.operation == operation and rule.name in (None, name):
                rule.times -= 1
                if rule.times == 0:
                    self._rules.remove(rule)
                return rule.fault
        return None

    def _limit(self, operation: str) -> RateLimit | None:
        if operation == "create":
            return self.create_limit
        return None if operation == "ping" else self.other_limit

    def _throttled(self, operation: str) -> Answer:
        self.stats.throttled += 1
        # Without a configured limit, an injected 429 words the upstream's own.
        limit = self._limit(operation) or RateLimit({"create": 30, "ping": 100}.get(operation, 50))
        return Answer(429, {"error": f"Rate limit exceeded: {_describe(limit)}"})

    async def _create(self, body: object, *, client: str = ONE_CLIENT) -> Hospital:
        name = body.get("name") if isinstance(body, dict) else None
        with self._gate("create", name if isinstance(name, str) else None, client):
            name, address, phone, batch_id = _fields(body, with_batch=True)
            # Counted before the sleep and stored after it: concurrent creates overshoot.
            if batch_id is not None and len(self._batches.get(batch_id, {})) >= self.batch_cap:
                raise Answer(400, {"detail": f"Batch cannot exceed {self.batch_cap} hospitals"})
            stats, generation = self.stats, self._generation
            stats.creates_in_flight += 1
            stats.max_creates_in_flight = max(stats.max_creates_in_flight, stats.creates_in_flight)
            try:
                await anyio.sleep(self.latency)
            finally:
                # The upstream finishes a create even when its caller stops waiting,
                # but a restart (reset()) takes the creates in flight with it.
                stats.creates_in_flight -= 1
                restarted = generation != self._generation
                if not restarted:
                    hospital = self._store_new(name, address, phone, batch_id)
            if restarted:
                raise Lost
            return hospital

    def _store_new(
        self, name: str, address: str, phone: str | None, batch_id: UUID | None
    ) -> Hospital:
        hospital = Hospital(
            id=self._next_id,
            name=name,
            address=address,
            phone=phone,
            creation_batch_id=batch_id,
            active=batch_id is None,
            created_at=dt.datetime.now(dt.UTC),
        )
        self._next_id += 1
        self._store[hospital.id] = hospital
        if batch_id is not None:
            self._batches.setdefault(batch_id, {})[hospital.id] = None
        while len(self._store) > self.capacity:
            self._remove(next(iter(self._store)))
        return hospital

    def _remove(self, hospital_id: int) -> None:
        batch_id = self._store.pop(hospital_id).creation_batch_id
        if batch_id is not None:
            members = self._batches[batch_id]
            del members[hospital_id]
            if not members:
                del self._batches[batch_id]

    def _members(self, raw_batch_id: str) -> list[Hospital]:
        batch_id = _uuid(raw_batch_id)
        if batch_id is None:
            raise _invalid("uuid_parsing", ["path", "batch_id"], _NOT_UUID, raw_batch_id)
        members = self.batch(batch_id)
        if not members:
            raise Answer(404, {"detail": "No hospitals found for this batch"})
        return members

    def _existing(self, raw_hospital_id: str) -> Hospital:
        if re.fullmatch(r"\s*[+-]?\d+\s*", raw_hospital_id) is None:
            msg = "Input should be a valid integer, unable to parse string as an integer"
            raise _invalid("int_parsing", ["path", "hospital_id"], msg, raw_hospital_id)
        hospital = self._store.get(int(raw_hospital_id))
        if hospital is None:
            raise Answer(404, {"detail": "Hospital not found"})
        return hospital

    async def _ping(self, *, client: str = ONE_CLIENT) -> None:
        with self._gate("ping", client=client):
            pass

    async def _list_all(self, *, client: str = ONE_CLIENT) -> list[Hospital]:
        with self._gate("list_all", client=client):
            return self.hospitals

    async def _list(self, raw_batch_id: str, *, client: str = ONE_CLIENT) -> list[Hospital]:
        with self._gate("list", client=client):
            return self._members(raw_batch_id)

    async def _activate(self, raw_batch_id: str, *, client: str = ONE_CLIENT) -> int:
        with self._gate("activate", client=client):
            members = self._members(raw_batch_id)
            if any(hospital.active for hospital in members):
                raise Answer(400, {"detail": "Batch already activated"})
            for hospital in members:
                self._store[hospital.id] = attrs.evolve(hospital, active=True)
            return len(members)

    async def _delete_batch(self, raw_batch_id: str, *, client: str = ONE_CLIENT) -> int:
        with self._gate("delete_batch", client=client):
            members = self._members(raw_batch_id)
            for hospital in members:
                self._remove(hospital.id)
            return len(members)

    async def _get(self, raw_hospital_id: str, *, client: str = ONE_CLIENT) -> Hospital:
        with self._gate("get_hospital", client=client):
            return self._existing(raw_hospital_id)

    async def _update(
        self, raw_hospital_id: str, body: object, *, client: str = ONE_CLIENT
    ) -> Hospital:
        with self._gate("update_hospital", client=client):
            hospital = self._existing(raw_hospital_id)
            name, address, phone, _ = _fields(body, with_batch=False)
            updated = attrs.evolve(hospital, name=name, address=address, phone=phone)
            self._store[hospital.id] = updated
            return updated

    async def _delete_hospital(self, raw_hospital_id: str, *, client: str = ONE_CLIENT) -> bool:
        with self._gate("delete_hospital", client=client):
            self._remove(self._existing(raw_hospital_id).id)
            return True


class _Gate:
    """Hides the answer of a call that suffers FAIL_ or ERROR_AFTER_STORING, whatever it was."""

    def __init__(self, fault: Fault | None) -> None:
        #: What the caller gets instead of the call's answer, if anything.
        self.instead: Exception | None = None
        if fault is Fault.FAIL_AFTER_STORING:
            self.instead = Lost()
        elif fault is Fault.ERROR_AFTER_STORING:
            self.instead = Answer(500, "Internal Server Error")

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        # Cancellation passes through: only an answer (or success) can be hidden.
        if self.instead is not None and (exc is None or isinstance(exc, Answer)):
            raise self.instead


def _describe(limit: RateLimit) -> str:
    """A limit as slowapi words it: "30 per 1 minute"."""
    if limit.window % 60 == 0:
        return f"{limit.count} per {limit.window / 60:g} minute"
    return f"{limit.count} per {limit.window:g} second"


_NOT_UUID, _NOT_STRING = "Input should be a valid UUID", "Input should be a valid string"


def _error(kind: str, loc: list[str], msg: str, value: object = None) -> dict[str, Any]:
    """One pydantic error as FastAPI reports it in a 422."""
    return {"type": kind, "loc": loc, "msg": msg, "input": value}


def _invalid(kind: str, loc: list[str], msg: str, value: object = None) -> Answer:
    return Answer(422, {"detail": [_error(kind, loc, msg, value)]})


def _uuid(raw: object) -> UUID | None:
    try:
        return UUID(raw) if isinstance(raw, str) else None
    except ValueError:
        return None


def _fields(body: object, *, with_batch: bool) -> tuple[str, str, str | None, UUID | None]:
    """Validate a create (or update) body as the upstream's pydantic model does."""
    if body is UNPARSABLE:
        raise _invalid("json_invalid", ["body"], "JSON decode error")
    if not isinstance(body, dict):
        msg = "Input should be a valid dictionary or object to extract fields from"
        raise _invalid("model_attributes_type", ["body"], msg, body)
    errors = []
    for key in ("name", "address"):
        value = body.get(key)
        if key not in body:
            errors.append(_error("missing", ["body", key], "Field required"))
        elif not isinstance(value, str):
            errors.append(_error("string_type", ["body", key], _NOT_STRING, value))
        elif not value.strip():
            msg = f"Value error, {key} must not be blank"
            errors.append(_error("value_error", ["body", key], msg, value))
    phone = body.get("phone")
    if phone is not None and not isinstance(phone, str):
        errors.append(_error("string_type", ["body", "phone"], _NOT_STRING, phone))
    raw_batch_id = body.get("creation_batch_id") if with_batch else None
    batch_id = None if raw_batch_id is None else _uuid(raw_batch_id)
    if raw_batch_id is not None and batch_id is None:
        loc = ["body", "creation_batch_id"]
        errors.append(_error("uuid_parsing", loc, _NOT_UUID, raw_batch_id))
    if errors:
        raise Answer(422, {"detail": errors})
    return body["name"], body["address"], phone, batch_id
