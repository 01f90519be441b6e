"""Pacing shared by every process that uses one Redis: :class:`RedisRateGate`."""

from __future__ import annotations

from redis.asyncio import Redis

from hospital_bulk._models import RateLimit
from hospital_bulk._pacing import CallKind, window_margin

from ._redis_scripts import store_errors

# The rules are LocalRateGate's and FixedWindow's, line for line; the clock is Redis's
# TIME so that every process agrees on it. A window is a hash (opened, used,
# not_before) and the shared pause one key (paused_until), each expiring once it no
# longer matters: a missing key behaves exactly like a closed window or no pause.
_CLOCK = """
local time = redis.call('TIME')
local now = tonumber(time[1]) + tonumber(time[2]) / 1000000
local function keep_for(moment) return math.ceil((moment - now) * 1000) + 1000 end
local function stamp(moment) return string.format('%.6f', moment) end
"""

#: KEYS: window, pause. ARGV: count (0: unpaced), window, margin.
#: Returns 0 when a request may go, or the seconds to wait before asking again.
_TAKE = (
    _CLOCK
    + """
local paused = tonumber(redis.call('GET', KEYS[2]))
if paused and paused > now then return tostring(paused - now) end
local count = tonumber(ARGV[1])
if count <= 0 then return '0' end
local span = tonumber(ARGV[2]) + tonumber(ARGV[3])
local window = redis.call('HMGET', KEYS[1], 'opened', 'used', 'not_before')
local opened, used, not_before = tonumber(window[1]), tonumber(window[2]) or 0, tonumber(window[3])
if not_before and now < not_before then return tostring(not_before - now) end
if not opened or now >= opened + span then opened, used = now, 0 end
if used >= count then return tostring(opened + span - now) end
redis.call('HSET', KEYS[1], 'opened', stamp(opened), 'used', used + 1)
redis.call('PEXPIRE', KEYS[1], keep_for(opened + span))
return '0'
"""
)

#: KEYS: window, pause. ARGV: count (0: unpaced), window, margin, Retry-After ('' if
#: none), the pause when unpaced. Returns the pause in seconds.
_THROTTLED = (
    _CLOCK
    + """
local count, window = tonumber(ARGV[1]), tonumber(ARGV[2])
local delay
if ARGV[4] ~= '' then
    delay = tonumber(ARGV[4])
elseif count <= 0 then
    delay = tonumber(ARGV[5])
else
    local opened = tonumber(redis.call('HGET', KEYS[1], 'opened'))
    local remaining = 0
    if opened then remaining = math.max(0, opened + window + tonumber(ARGV[3]) - now) end
    if remaining > 0 then delay = remaining else delay = window end
end
local paused = math.max(tonumber(redis.call('GET', KEYS[2])) or now, now + delay)
redis.call('SET', KEYS[2], stamp(paused), 'PX', keep_for(paused))
if count > 0 then
    local not_before = tonumber(redis.call('HGET', KEYS[1], 'not_before')) or paused
    not_before = math.max(not_before, paused)
    redis.call('HDEL', KEYS[1], 'opened', 'used')
    redis.call('HSET', KEYS[1], 'not_before', stamp(not_before))
    redis.call('PEXPIRE', KEYS[1], keep_for(not_before))
end
return tostring(delay)
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
    """Fixed windows and a shared pause kept in Redis: every process that uses the
    same Redis and namespace paces against the same windows.

    The same rules as :class:`~hospital_bulk.LocalRateGate`: a window opens at the first
    take after the previous one closed (plus :func:`window_margin`); a 429 pauses
    everyone and restarts the window after the pause.
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
        self._window_keys = {kind: f"{namespace}:pace:{kind.value}" for kind in CallKind}
        self._take = client.register_script(_TAKE)
        self._throttled = client.register_script(_THROTTLED)
        self._paused_for = client.register_script(_PAUSED_FOR)

    async def take(self, kind: CallKind) -> float:
        with store_errors():
            wait = await self._take(
                keys=[self._window_keys[kind], self._pause_key], args=self._window_args(kind)
            )
        return float(wait)

    async def throttled(self, kind: CallKind, retry_after: float | None) -> float:
        args = [*self._window_args(kind), "" if retry_after is None else retry_after]
        with store_errors():
            delay = await self._throttled(
                keys=[self._window_keys[kind], self._pause_key],
                args=[*args, self._unpaced_pause],
            )
        return float(delay)

    async def paused_for(self) -> float:
        with store_errors():
            wait = await self._paused_for(keys=[self._pause_key])
        return float(wait)

    def _window_args(self, kind: CallKind) -> list[float | int]:
        limit = self._limits[kind]
        if limit is None or limit.count <= 0:
            return [0, 0.0, 0.0]
        return [limit.count, limit.window, window_margin(limit.window)]
