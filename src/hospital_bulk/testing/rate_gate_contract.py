"""The contract of a store whose rate gate every process on it shares.

Subclass :class:`SharedRateGateContract` beside
:class:`~hospital_bulk.testing.store_contract.StoreContract`, with the same ``store``
fixture, for a store whose ``rate_gate()`` returns a gate all its processes pace
through (SQLite, Redis). A store of one process alone returns ``None`` and does not
run it.
"""

from __future__ import annotations

from typing import ClassVar

import anyio
import pytest

from hospital_bulk import CallKind, JobStore, RateGate, RateLimit

__all__ = ["SharedRateGateContract"]


class SharedRateGateContract:
    """What a store whose ``rate_gate`` is shared by every process on it must do (a
    store of one process alone returns ``None`` there, and does not run this); subclass
    it beside :class:`StoreContract`."""

    pytestmark: ClassVar[list[pytest.MarkDecorator]] = [pytest.mark.anyio]

    async def test_a_shared_gate_allows_n_takes_in_any_window(self, store: JobStore) -> None:
        """N takes go, through any gate of the store; the next waits, at most a window
        (plus a margin of at most 1 s). A gate made later, as by a restarted process,
        remembers them. Unpaced kinds never wait."""
        limit = RateLimit(3, 30.0)
        first = _shared_gate(store, limit)
        second = _shared_gate(store, limit)

        takes = [await first.take(CallKind.CREATE), await second.take(CallKind.CREATE)]
        takes.append(await first.take(CallKind.CREATE))
        waits = [await gate.take(CallKind.CREATE) for gate in (first, second)]
        restarted = _shared_gate(store, limit)

        assert [0.0, 0.0, 0.0] == takes
        assert all(0 < wait <= limit.window + 1.0 for wait in waits), waits
        assert 0 < await restarted.take(CallKind.CREATE) <= limit.window + 1.0
        assert 0.0 == await restarted.take(CallKind.OTHER)

    async def test_a_shared_gate_frees_one_take_per_take_that_ages_out(
        self, store: JobStore
    ) -> None:
        """Sliding, not fixed: once the oldest of N takes is a window old, one take goes,
        not N: the others still count."""
        limit = RateLimit(2, 0.5)
        gate = _shared_gate(store, limit)
        assert 0.0 == await gate.take(CallKind.CREATE)
        await anyio.sleep(0.3)
        assert 0.0 == await gate.take(CallKind.CREATE)

        assert 0 < await gate.take(CallKind.CREATE)
        await _take_when_free(gate)

        assert 0 < await gate.take(CallKind.CREATE)

    async def test_a_429_through_one_gate_pauses_every_gate(self, store: JobStore) -> None:
        """Retry-After when given, else a window of the limit broken (``unpaced_pause``
        for an unpaced kind); every gate of the store waits out the pause, whatever kind."""
        first = _shared_gate(store, RateLimit(10, 60.0), unpaced_pause=0.25)
        second = _shared_gate(store, RateLimit(10, 60.0), unpaced_pause=0.25)

        assert 5.0 == await first.throttled(CallKind.CREATE, 5.0)
        assert 4.0 < await second.paused_for() <= 5.0
        assert 4.0 < await second.take(CallKind.OTHER) <= 5.0
        assert 0.25 == await second.throttled(CallKind.OTHER, None)
        assert 60.0 == await second.throttled(CallKind.CREATE, None)
        assert 59.0 < await first.take(CallKind.CREATE) <= 60.0


async def _take_when_free(gate: RateGate) -> None:
    while True:
        wait = await gate.take(CallKind.CREATE)
        if wait <= 0:
            return
        await anyio.sleep(wait)


def _shared_gate(store: JobStore, limit: RateLimit, unpaced_pause: float = 1.0) -> RateGate:
    gate = store.rate_gate(limit, None, unpaced_pause)
    assert gate is not None, "this store offers no shared rate gate"
    return gate
