"""The one implementation of the fake directory's semantics, behind both of its faces.

:class:`DirectoryCore` holds the state and runs every operation as the upstream
does, signalling its answers with :class:`Answer`, :class:`NotSent` and
:class:`Lost`; :class:`~hospital_bulk.testing.FakeDirectory` turns those into our exceptions (the
client face) or into HTTP responses (the HTTP face). The checks a request meets
before an operation runs, and their wording, are in :mod:`._rules`.
"""

from __future__ import annotations

import datetime as dt
import time
from collections import Counter
from collections.abc import Callable
from uuid import UUID

import anyio
import attrs

from hospital_bulk._models import UPSTREAM_LIMITS, Hospital, RateLimit

from ._chaos import Chaos, ChaosRun
from ._faults import OPERATIONS, Fault, Operation
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


class DirectoryCore:
    """The state and semantics of :class:`~hospital_bulk.testing.FakeDirectory`.

    Each operation takes what an HTTP request carries (raw path parameters, the
    JSON body) so that validation, like everything else, is written once.
    """

    # The chaos mode at work, if any (start_chaos): set apart from __init__'s state.
    _chaos_run: ChaosRun | None = None

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
        self._chaos_run = ChaosRun(chaos, self._clock())

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

    def _chaos_outage(self, run: ChaosRun) -> None:
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
