"""Chaos: faults, holds and outages at random, seeded, for the fake directory."""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Mapping

import attrs

from ._faults import OPERATIONS, Fault, Operation

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


class ChaosRun:
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
