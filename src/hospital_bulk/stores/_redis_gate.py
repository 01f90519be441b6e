"""Pacing shared by every process that uses one Redis: :class:`RedisRateGate`."""

from __future__ import annotations

from redis.asyncio import Redis

from hospital_bulk._models import RateLimit
from hospital_bulk._pacing import CallKind, throttle_delay, window_margin

from ._redis_scripts import store_errors

# The rules are SlidingLog's and LocalRateGate's; the clock is Redis's TIME so that
# every process agrees on it. The takes of a kind are a sorted set (member unique per
# take, score its time) keeping only those within a span, and the shared pause one key
# (paused_until); each expires once it no longer matters: a missing key behaves
# exactly like no recent take or no pause.
_CLOCK = """
local time = redis.call('TIME')
local now = tonumber(time[1]) + tonumber(time[2]) / 1000000
local function keep_for(moment) return math.ceil((moment - now) * 1000) + 1000 end
local function stamp(moment) return string.format('%.6f', moment) end
"""

#: KEYS: takes, pause, sequence. ARGV: count (0: unpaced), span (window + margin).
#: Returns 0 when a request may go, or the seconds to wait before asking again.
_TAKE = (
    _CLOCK
    + """
local paused = tonumber(redis.call('GET', KEYS[2]))
if paused and paused > now then return tostring(paused - now) end
local count = tonumber(ARGV[1])
if count <= 0 then return '0' end
local span = tonumber(ARGV[2])
-- Takes a span old hold nothing back: forgotten.
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', stamp(now - span))
if redis.call('ZCARD', KEYS[1]) >= count then
    local nth = redis.call('ZREVRANGE', KEYS[1], count - 1, count - 1, 'WITHSCORES')
    local wait = tonumber(nth[2]) + span - now
    if wait > 0 then return tostring(wait) end
end
-- A member of its own per take, even for two in one microsecond.
local seq = redis.call('INCR', KEYS[3])
redis.call('ZADD', KEYS[1], stamp(now), stamp(now) .. '/' .. seq)
-- Only the last count can hold a take back.
redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -count - 1)
redis.call('PEXPIRE', KEYS[1], keep_for(now + span))
redis.call('PEXPIRE', KEYS[3], keep_for(now + span))
return '0'
"""
)

#: KEYS: pause. ARGV: the pause in seconds. Returns it.
_THROTTLED = (
    _CLOCK
    + """
local delay = tonumber(ARGV[1])
local paused = math.max(tonumber(redis.call('GET', KEYS[1])) or now, now + delay)
redis.call('SET', KEYS[1], stamp(paused), 'PX', keep_for(paused))
return ARGV[1]
"""
)

#: KEYS: pause. Returns the seconds until the pause ends.
_PAUSED_FOR = (
    _CLOCK
    + """
local paused = tonumber(redis.call('GET', KEYS[1]))
if paused and paused > now then return tostring(paused - now) end
return '0'
"""
)


class RedisRateGate:
    """Sliding logs and a shared pause kept in Redis: every process that uses the same
    Redis and namespace paces against the same takes.

    The same rules as :class:`~hospital_bulk.LocalRateGate`: never more than ``count``
    takes in any span of the window plus :func:`window_margin`; a 429 pauses everyone
    for Retry-After, or a window.
    """

    def __init__(
        self,
        client: Redis,
        *,
        namespace: str,
        create_limit: RateLimit | None,
        other_limit: RateLimit | None,
        unpaced_pause: float = 1.0,
    ) -> None:
        self._limits = {CallKind.CREATE: create_limit, CallKind.OTHER: other_limit}
        self._unpaced_pause = unpaced_pause
        self._pause_key = f"{namespace}:pace:paused"
        # Not the fixed windows' old keys (hashes): a sorted set under one of those
        # names would fail with WRONGTYPE until the hash expired.
        self._take_keys = {
            kind: [f"{namespace}:pace:takes:{kind.value}", self._pause_key, f"{namespace}:pace:seq"]
            for kind in CallKind
        }
        self._take_args = {kind: _take_args(limit) for kind, limit in self._limits.items()}
        self._take = client.register_script(_TAKE)
        self._throttled = client.register_script(_THROTTLED)
        self._paused_for = client.register_script(_PAUSED_FOR)

    async def take(self, kind: CallKind) -> float:
        with store_errors():
            wait = await self._take(keys=self._take_keys[kind], args=self._take_args[kind])
        return float(wait)

    async def throttled(self, kind: CallKind, retry_after: float | None) -> float:
        delay = throttle_delay(self._limits[kind], retry_after, self._unpaced_pause)
        with store_errors():
            await self._throttled(keys=[self._pause_key], args=[delay])
        return delay

    async def paused_for(self) -> float:
        with store_errors():
            wait = await self._paused_for(keys=[self._pause_key])
        return float(wait)


def _take_args(limit: RateLimit | None) -> list[float | int]:
    if limit is None or limit.count <= 0:
        return [0, 0.0]
    return [limit.count, limit.window + window_margin(limit.window)]
