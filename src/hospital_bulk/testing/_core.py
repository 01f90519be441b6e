"""The one implementation of the fake directory's semantics, behind both of its faces.

:class:`DirectoryCore` holds the state and runs every operation as the upstream
does, signalling its answers with :class:`Answer`, :class:`NotSent` and
:class:`Lost`; :class:`~hospital_bulk.testing.FakeDirectory` turns those into our exceptions (the
client face) or into HTTP responses (the HTTP face). The checks a request meets
before an operation runs, and their wording, are in :mod:`._rules`.
"""

from __future__ import annotations

import datetime as dt
import enum
import math
import random
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from typing import Literal, get_args
from uuid import UUID

import anyio
import attrs

from hospital_bulk._models import UPSTREAM_LIMITS, Hospital, RateLimit

from ._rules import (
    LIMIT_MODES,
    Answer,
    LimitMode,
    Lost,
    NotSent,
    SlidingWindow,
    Window,
    hospital_fields,
    parse_batch_id,
    parse_hospital_id,
    rate_window,
    throttled,
)

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
    #: The call is held ``seconds`` (the rule's) before it takes effect and answers:
    #: held past the client's timeout, the create lands after its caller gave up.
    HOLD = "hold"


@attrs.define
class DirectoryStats:
    """What a :class:`FakeDirectory` has seen.

    ``calls`` counts every call per operation (``calls["create"]``), failed ones
    included; ``throttled`` is how many 429s were answered and ``faults`` how many
    injected faults were suffered, all operations together;
    ``max_creates_in_flight`` is the most creates seen running at once.
    ``chaos`` counts what a :class:`Chaos` mode injected, by kind: each fault's value
    (``"throttle"``), ``"hold:3"`` for a create held 3 s, ``"outage"`` for each
    outage begun (those faults count in ``faults`` and ``throttled`` too).
    """

    calls: Counter[str] = attrs.Factory(Counter)
    throttled: int = 0
    faults: int = 0
    creates_in_flight: int = 0
    max_creates_in_flight: int = 0
    chaos: Counter[str] = attrs.Factory(Counter)


#: The rate-limit key of callers that do not say who they are: the in-process
#: fake has this one client; the HTTP face may pass each caller's address.
ONE_CLIENT = ""


@attrs.define
class _Rule:
    fault: Fault
    operation: str
    times: int
    name: str | None
    seconds: float = 0.0


#: The operations a :class:`Chaos` mode troubles by default: those the engine calls
#: (``DirectoryClient``'s), not the HTTP-only reads one checks the directory with.
CHAOS_OPERATIONS: frozenset[Operation] = frozenset(
    {"create", "list", "activate", "delete_batch", "delete_hospital", "ping"}
)
# The faults a chaos mode draws per call; holds and outages have their own fields.
_CHAOS_FAULTS = tuple(fault for fault in Fault if fault is not Fault.HOLD)


def _rates(value: Mapping[Fault, float] | Iterable[tuple[Fault, float]]) -> dict[Fault, float]:
    items = value.items() if isinstance(value, Mapping) else value
    rates = {Fault(fault): float(rate) for fault, rate in items}
    return {fault: rates[fault] for fault in _CHAOS_FAULTS if rates.get(fault)}


def _holds(value: Mapping[float, float] | Iterable[tuple[float, float]]) -> dict[float, float]:
    items = value.items() if isinstance(value, Mapping) else value
    holds: dict[float, float] = {}
    for seconds, rate in items:
        holds[float(seconds)] = holds.get(float(seconds), 0.0) + float(rate)
    return {seconds: holds[seconds] for seconds in sorted(holds) if holds[seconds]}


def _chance(value: float) -> bool:
    return math.isfinite(value) and 0.0 <= value <= 1.0


@attrs.frozen(eq=True, hash=False)
class Chaos:
    """Faults at random, seeded: what :meth:`FakeDirectory.start_chaos` injects.

    Each call of one of ``operations`` draws at most one fault: ``rates[fault]`` is
    the chance that a call suffers ``fault`` (any fault but ``HOLD``), and
    ``holds[seconds]`` the chance that a create is held ``seconds`` before it is
    stored and answered (a call other than a create that draws a hold is served as
    usual). The chances together are at most 1. An injected rule
    (:meth:`FakeDirectory.inject`) due for a call wins over the draw.

    Outages are not a per-call fault but a state in time: ``outage`` is the share of
    the time the directory is down, in outages of ``outage_seconds`` (every call
    503, nothing stored, as :meth:`FakeDirectory.outage`). ``outage=0.1`` with 20 s
    outages means one about every 200 s: each starts at the first call after a
    healthy spell drawn evenly between 90 and 270 s (half to one and a half times the
    mean of ``outage_seconds * (1 - outage) / outage``).

    ``seed`` seeds both draws, so the same calls in the same order at the same
    times meet the same faults. Over a real socket concurrent calls come in
    whatever order the network gives them: the counts are then alike, not equal.
    """

    rates: dict[Fault, float] = attrs.field(factory=dict, converter=_rates)
    holds: dict[float, float] = attrs.field(factory=dict, converter=_holds)
    outage: float = 0.0
    outage_seconds: float = 20.0
    seed: int = 0
    operations: frozenset[Operation] = attrs.field(default=CHAOS_OPERATIONS, converter=frozenset)

    def __attrs_post_init__(self) -> None:
        for fault, rate in self.rates.items():
            if not _chance(rate):
                raise ValueError(f"the chance of {fault.value} must be in 0..1, not {rate}")
        for seconds, rate in self.holds.items():
            if not (math.isfinite(seconds) and seconds >= 0):
                raise ValueError(f"a hold lasts seconds >= 0, not {seconds}")
            if not _chance(rate):
                raise ValueError(f"the chance of a {seconds:g} s hold must be in 0..1, not {rate}")
        total = sum(self.rates.values()) + sum(self.holds.values())
        if total > 1.0 + 1e-9:
            raise ValueError(f"the chances of the faults add up to {total:g}: at most 1")
        if not (math.isfinite(self.outage) and 0.0 <= self.outage < 1.0):
            raise ValueError(
                f"outage is the share of time down, in 0..1 (not 1), not {self.outage}"
            )
        if not (math.isfinite(self.outage_seconds) and self.outage_seconds > 0):
            raise ValueError(f"an outage lasts seconds > 0, not {self.outage_seconds}")
        unknown = sorted(set(self.operations) - set(OPERATIONS))
        if unknown:
            raise ValueError(f"unknown operations {unknown}; of {OPERATIONS}")

    @classmethod
    def parse(cls, text: str, *, seed: int = 0) -> Chaos | None:
        """A chaos mode from its spelling, as :meth:`describe` writes it; ``None`` for
        ``""``, ``"0"`` or ``"off"``.

        Comma-separated ``fault=CHANCE`` (``throttle=0.1``), ``hold=CHANCE:SECONDS``
        (repeatable: ``hold=0.1:3,hold=0.02:6``) and ``outage=SHARE:SECONDS``
        (``outage=0.1:20``; ``SECONDS`` defaults to 20). Raises ``ValueError``.
        """
        if text.strip().lower() in ("", "0", "off", "none"):
            return None
        rates: dict[Fault, float] = {}
        holds: list[tuple[float, float]] = []
        outage, outage_seconds = 0.0, 20.0
        names = [fault.value for fault in Fault]
        for part in text.split(","):
            key, equals, value = (s.strip() for s in part.strip().partition("="))
            key = key.lower()
            chance_text, colon, seconds_text = value.partition(":")
            try:
                chance = float(chance_text)
                seconds = float(seconds_text) if colon else None
            except ValueError:
                raise ValueError(
                    f"{part.strip()!r}: write KIND=CHANCE or KIND=CHANCE:SECONDS"
                ) from None
            if not equals or key not in (*names, "outage"):
                raise ValueError(
                    f"{part.strip()!r}: the kinds are {names} and outage, as KIND=CHANCE"
                )
            if key == Fault.HOLD.value:
                if seconds is None:
                    raise ValueError(f"{part.strip()!r}: a hold says how long: hold=CHANCE:SECONDS")
                holds.append((seconds, chance))
            elif key == "outage":
                outage, outage_seconds = chance, outage_seconds if seconds is None else seconds
            elif seconds is not None:
                raise ValueError(f"{part.strip()!r}: only hold and outage take :SECONDS")
            else:
                rates[Fault(key)] = chance
        return cls(rates, holds, outage, outage_seconds, seed)

    def describe(self) -> str:
        """The spelling :meth:`parse` reads (without the seed)."""
        parts = [f"{fault.value}={rate:g}" for fault, rate in self.rates.items()]
        parts += [f"hold={rate:g}:{seconds:g}" for seconds, rate in self.holds.items()]
        if self.outage:
            parts.append(f"outage={self.outage:g}:{self.outage_seconds:g}")
        return ",".join(parts) or "off"


class _ChaosRun:
    """A :class:`Chaos` mode at work: its random draws and its next outage."""

    def __init__(self, chaos: Chaos, now: float) -> None:
        self.chaos = chaos
        self._faults = random.Random(chaos.seed)
        self._outages = random.Random(f"outage:{chaos.seed}")
        table: list[tuple[float, Fault, float, str]] = []
        bound = 0.0
        for fault, rate in chaos.rates.items():
            bound += rate
            table.append((bound, fault, 0.0, fault.value))
        for seconds, rate in chaos.holds.items():
            bound += rate
            table.append((bound, Fault.HOLD, seconds, f"{Fault.HOLD.value}:{seconds:g}"))
        self._table = table
        self._next_outage = now + self._healthy_spell()

    def _healthy_spell(self) -> float:
        if not self.chaos.outage:
            return math.inf
        mean = self.chaos.outage_seconds * (1 - self.chaos.outage) / self.chaos.outage
        return mean * self._outages.uniform(0.5, 1.5)

    def outage_due(self, now: float) -> float | None:
        """When an outage that begins now ends, if one is due; else ``None``."""
        if now < self._next_outage:
            return None
        until = now + self.chaos.outage_seconds
        self._next_outage = until + self._healthy_spell()
        return until

    def draw(self, operation: str) -> tuple[Fault, float, str] | None:
        """The fault this call suffers (with a hold's seconds, and its kind), if any."""
        if operation not in self.chaos.operations:
            return None
        chance = self._faults.random()
        for bound, fault, seconds, kind in self._table:
            if chance < bound:
                if fault is Fault.HOLD and operation != "create":
                    return None
                return fault, seconds, kind
        return None


class DirectoryCore:
    """The state and semantics of :class:`~hospital_bulk.testing.FakeDirectory`.

    Each operation takes what an HTTP request carries (raw path parameters, the
    JSON body) so that validation, like everything else, is written once.
    """

    # The chaos mode at work, if any (start_chaos): set apart from __init__'s state.
    _chaos_run: _ChaosRun | None = None

    def __init__(
        self,
        *,
        latency: float = 0.0,
        batch_cap: int = UPSTREAM_LIMITS.batch_cap,
        create_limit: RateLimit | None = None,
        other_limit: RateLimit | None = None,
        capacity: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
        limit_mode: LimitMode = "fixed",
    ) -> None:
        if limit_mode not in LIMIT_MODES:
            raise ValueError(f"limit_mode must be one of {LIMIT_MODES}, not {limit_mode!r}")
        self.latency = latency
        self.batch_cap = batch_cap
        self.create_limit = create_limit
        self.other_limit = other_limit
        self.capacity = capacity
        self.limit_mode: LimitMode = limit_mode
        self.stats = DirectoryStats()
        self._clock = clock
        self._store: dict[int, Hospital] = {}  # in creation order, so the oldest comes first
        self._batches: dict[UUID, dict[int, None]] = {}  # batch id -> member ids, in order
        self._next_id = 1
        self._rules: list[_Rule] = []
        self._down_until = float("-inf")  # an outage: every call answers 503 until then
        # (client, operation) -> window
        self._windows: dict[tuple[str, str], Window | SlidingWindow] = {}
        # Bumped by reset(): a create in flight across it is lost, as in a restart.
        self._generation = 0

    def inject(
        self,
        fault: Fault,
        *,
        operation: Operation = "create",
        times: int = 1,
        name: str | None = None,
        seconds: float = 0.0,
    ) -> None:
        """Make the next ``times`` calls of ``operation`` suffer ``fault``.

        With ``name`` (creates only), only creates of a hospital with that name
        count. ``seconds`` is how long :attr:`Fault.HOLD` holds a create. Rules are
        checked in the order added and dropped once used up.
        """
        if operation not in OPERATIONS:
            raise ValueError(f"unknown operation {operation!r}; one of {OPERATIONS}")
        if times < 1:
            raise ValueError(f"times must be at least 1, not {times}")
        if name is not None and operation != "create":
            raise ValueError("name only selects creates")
        if fault is Fault.HOLD and (operation != "create" or not seconds >= 0):
            raise ValueError("hold holds creates, for seconds >= 0")
        self._rules.append(_Rule(fault, operation, times, name, seconds))

    def outage(self, seconds: float) -> None:
        """For the next ``seconds``, answer every call 503 and store nothing, as the
        directory's front does while it is down (``0`` ends an outage)."""
        self._down_until = self._clock() + seconds

    def start_chaos(self, chaos: Chaos) -> None:
        """From now on, inject faults and outages at random as ``chaos`` says.

        Replaces any chaos mode before, its draws starting afresh from its seed.
        What it injects is counted in ``stats.chaos``. :meth:`reset` keeps the mode
        (a setting, like the latency) and starts its draws afresh too;
        :meth:`clear_faults` leaves it on: :meth:`stop_chaos` ends it.
        """
        self._chaos_run = _ChaosRun(chaos, self._clock())

    def stop_chaos(self) -> None:
        """No more random faults or outages; an outage under way runs its course."""
        self._chaos_run = None

    @property
    def chaos(self) -> Chaos | None:
        """The chaos mode at work (:meth:`start_chaos`), or ``None``."""
        return None if self._chaos_run is None else self._chaos_run.chaos

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
        self._down_until = float("-inf")
        self.stats = DirectoryStats()
        self._generation += 1
        if self._chaos_run is not None:
            self.start_chaos(self._chaos_run.chaos)

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
        if self._chaos_run is not None:
            self._chaos_outage(self._chaos_run)
        if self._clock() < self._down_until:
            raise Answer(503, "Service Unavailable")
        rule = self._take_fault(operation, name) or self._chaos_fault(operation)
        fault = rule.fault if rule is not None else None
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
        gate = _Gate(fault, hold=rule.seconds if rule is not None else 0.0)
        limit = self._limit(operation)
        if limit is not None:
            window = self._windows.get((client, operation))
            if window is None:
                window = self._windows[client, operation] = rate_window(limit, self.limit_mode)
            if not window.admit(self._clock()):
                raise self._throttled(operation) if gate.instead is None else gate.instead
        return gate

    def _take_fault(self, operation: str, name: str | None) -> _Rule | None:
        for rule in self._rules:
            if rule.operation == operation and rule.name in (None, name):
                rule.times -= 1
                if rule.times == 0:
                    self._rules.remove(rule)
                return rule
        return None

    def _chaos_outage(self, run: _ChaosRun) -> None:
        now = self._clock()
        if now >= self._down_until and (until := run.outage_due(now)) is not None:
            self._down_until = until
            self.stats.chaos["outage"] += 1

    def _chaos_fault(self, operation: str) -> _Rule | None:
        drawn = None if self._chaos_run is None else self._chaos_run.draw(operation)
        if drawn is None:
            return None
        fault, seconds, kind = drawn
        self.stats.chaos[kind] += 1
        return _Rule(fault, operation, 1, None, seconds)

    def _limit(self, operation: str) -> RateLimit | None:
        if operation == "create":
            return self.create_limit
        return None if operation == "ping" else self.other_limit

    def _throttled(self, operation: str) -> Answer:
        self.stats.throttled += 1
        return throttled(operation, self._limit(operation))

    async def _create(self, body: object, *, client: str = ONE_CLIENT) -> Hospital:
        name = body.get("name") if isinstance(body, dict) else None
        with self._gate("create", name if isinstance(name, str) else None, client) as gate:
            name, address, phone, batch_id = hospital_fields(body, with_batch=True)
            # Counted before the sleep and stored after it: concurrent creates overshoot.
            if batch_id is not None and len(self._batches.get(batch_id, {})) >= self.batch_cap:
                raise Answer(400, {"detail": f"Batch cannot exceed {self.batch_cap} hospitals"})
            stats, generation = self.stats, self._generation
            stats.creates_in_flight += 1
            stats.max_creates_in_flight = max(stats.max_creates_in_flight, stats.creates_in_flight)
            try:
                await anyio.sleep(self.latency + gate.hold)
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
        members = self.batch(parse_batch_id(raw_batch_id))
        if not members:
            raise Answer(404, {"detail": "No hospitals found for this batch"})
        return members

    def _existing(self, raw_hospital_id: str) -> Hospital:
        hospital = self._store.get(parse_hospital_id(raw_hospital_id))
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
            name, address, phone, _ = hospital_fields(body, with_batch=False)
            updated = attrs.evolve(hospital, name=name, address=address, phone=phone)
            self._store[hospital.id] = updated
            return updated

    async def _delete_hospital(self, raw_hospital_id: str, *, client: str = ONE_CLIENT) -> bool:
        with self._gate("delete_hospital", client=client):
            self._remove(self._existing(raw_hospital_id).id)
            return True


class _Gate:
    """Hides the answer of a call that suffers FAIL_ or ERROR_AFTER_STORING, whatever it was."""

    def __init__(self, fault: Fault | None, *, hold: float = 0.0) -> None:
        #: Seconds a create is held before it takes effect (Fault.HOLD).
        self.hold = hold if fault is Fault.HOLD else 0.0
        #: What the caller gets instead of the call's answer, if anything.
        self.instead: Exception | None = None
        if fault is Fault.FAIL_AFTER_STORING:
            self.instead = Lost()
        elif fault is Fault.ERROR_AFTER_STORING:
            self.instead = Answer(500, "Internal Server Error")

    def __enter__(self) -> _Gate:
        return self

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        # Cancellation passes through: only an answer (or success) can be hidden.
        if self.instead is not None and (exc is None or isinstance(exc, Answer)):
            raise self.instead
