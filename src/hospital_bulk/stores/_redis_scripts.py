"""The Lua scripts of :class:`~hospital_bulk.stores.redis.RedisStore`.

Each runs atomically inside Redis, so that event numbering and the job's
bookkeeping stay consistent whatever number of processes write at once.

A job is a hash ``{ns}:job:{id}`` with these fields:

- ``core``: the job as JSON, without the fields below (changed by transitions only);
- ``rev``: bumped by every transition: the compare-and-set revision;
- ``state``, ``owner``, ``lease_expires``: read by the lease renewal;
- ``last_seq``, ``progress``, ``updated_at``: bumped by every event.

Rows are a hash ``{ns}:job:{id}:rows`` (row number -> JSON), events a stream
``{ns}:job:{id}:events`` with ids ``{seq}-0`` and fields ``at`` and ``event`` (the
draft as JSON).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from redis.exceptions import RedisError

from hospital_bulk.exceptions import StoreError


@contextmanager
def store_errors() -> Iterator[None]:
    """Redis failures (connection lost, script errors) surface as :class:`StoreError`."""
    try:
        yield
    except RedisError as error:
        raise StoreError(f"Redis failed: {error}") from error


#: KEYS: job, rows, events, job index, active set[, idempotency key]
#: ARGV: job id, created (index score), core, state, owner, lease_expires, progress,
#:       at, first event, active ("1"/"0"), then row number and row JSON pairs.
#: Returns 1, 0 when the job exists already, or -1 when the idempotency key is taken.
ADD_JOB = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
if KEYS[6] and redis.call('EXISTS', KEYS[6]) == 1 then return -1 end
redis.call('HSET', KEYS[1], 'core', ARGV[3], 'rev', 0, 'state', ARGV[4], 'owner', ARGV[5],
    'lease_expires', ARGV[6], 'last_seq', 1, 'progress', ARGV[7], 'updated_at', ARGV[8])
redis.call('XADD', KEYS[3], '1-0', 'at', ARGV[8], 'event', ARGV[9])
redis.call('ZADD', KEYS[4], ARGV[2], ARGV[1])
if ARGV[10] == '1' then redis.call('SADD', KEYS[5], ARGV[1]) end
if KEYS[6] then redis.call('SET', KEYS[6], ARGV[1]) end
for i = 11, #ARGV, 2 do redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1]) end
return 1
"""

#: KEYS: job, rows, events
#: ARGV: at, progress of the last event, row count n, n row number and row JSON pairs,
#:       then the events as JSON.
#: Returns the first new sequence number (0 without events), or -1 for an unknown job.
SAVE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local last_row = 3 + 2 * tonumber(ARGV[3])
for i = 4, last_row, 2 do redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1]) end
if #ARGV == last_row then return 0 end
local seq = tonumber(redis.call('HGET', KEYS[1], 'last_seq'))
local first = seq + 1
for i = last_row + 1, #ARGV do
    seq = seq + 1
    redis.call('XADD', KEYS[3], seq .. '-0', 'at', ARGV[1], 'event', ARGV[i])
end
redis.call('HSET', KEYS[1], 'last_seq', seq, 'progress', ARGV[2], 'updated_at', ARGV[1])
return first
"""

#: KEYS: job, events, active set, then the job's other keys (rows[, idempotency key])
#: ARGV: job id, expected rev, core, state, owner, lease_expires, at, progress,
#:       active ("1"/"0"), expiry in ms (0: keep for ever), then the events in order
#: Returns the last event's sequence number; -1 for an unknown job, -2 when another
#: transition came first (read again and retry).
TRANSITION = """
local rev = redis.call('HGET', KEYS[1], 'rev')
if not rev then return -1 end
if rev ~= ARGV[2] then return -2 end
local seq = tonumber(redis.call('HGET', KEYS[1], 'last_seq'))
for i = 11, #ARGV do
    seq = seq + 1
    redis.call('XADD', KEYS[2], seq .. '-0', 'at', ARGV[7], 'event', ARGV[i])
end
redis.call('HSET', KEYS[1], 'rev', tonumber(rev) + 1, 'core', ARGV[3], 'state', ARGV[4],
    'owner', ARGV[5], 'lease_expires', ARGV[6], 'last_seq', seq, 'progress', ARGV[8],
    'updated_at', ARGV[7])
if ARGV[9] == '1' then
    redis.call('SADD', KEYS[3], ARGV[1])
else
    redis.call('SREM', KEYS[3], ARGV[1])
end
local expire = tonumber(ARGV[10])
local keys = {KEYS[1], KEYS[2], KEYS[4]}
-- The idempotency key is the job's only while it names the job.
if KEYS[5] and redis.call('GET', KEYS[5]) == ARGV[1] then keys[4] = KEYS[5] end
for _, key in ipairs(keys) do
    if expire > 0 then redis.call('PEXPIRE', key, expire) else redis.call('PERSIST', key) end
end
return seq
"""

#: KEYS: job
#: ARGV: owner, new lease_expires, then the active states
#: Returns 1 when renewed, 0 when the job is not ``owner``'s active job, -1 when unknown.
RENEW_LEASE = """
local job = redis.call('HMGET', KEYS[1], 'state', 'owner')
if not job[1] then return -1 end
if job[2] ~= ARGV[1] then return 0 end
for i = 3, #ARGV do
    if job[1] == ARGV[i] then
        redis.call('HSET', KEYS[1], 'lease_expires', ARGV[2])
        return 1
    end
end
return 0
"""
