"""The Lua scripts of the Redis WorkManager: each state change of a Work is one atomic script.

Key names come from :mod:`conveyor.work.redis_keys`; scripts receive them as KEYS (the recovery
script, which visits dead nodes, receives the prefix and the key parts as ARGV).
"""

from __future__ import annotations

__all__ = [
    "CANCEL",
    "CLAIM",
    "COMPLETE",
    "HEARTBEAT",
    "RECOVER",
    "RELEASE",
    "SCHEDULE",
    "STARTED_HEAD",
    "SUSPEND",
]

# KEYS: sched, queue, run, data, count, queues
# ARGV: entry, payload, mode, capacity, coalescing, idempotent, queue id
SCHEDULE = """
local sched, queue, run, data, count, queues = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local entry, payload, mode, cap = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
redis.call('SADD', queues, ARGV[7])
local is_sched = redis.call('SISMEMBER', sched, entry) == 1
if mode == 'IF_NOT_SCHEDULED' and is_sched then return 'skipped' end
if mode == 'IF_NOT_RUNNING_OR_SCHEDULED' and (is_sched or redis.call('HEXISTS', run, entry) == 1) then
  return 'skipped'
end
if is_sched then
  if ARGV[5] == '1' then
    redis.call('HSET', data, entry, payload)
    redis.call('HINCRBY', count, 'canceled', 1)
    return 'replaced'
  end
  if ARGV[6] == '1' then return 'skipped' end
end
if cap > 0 and redis.call('SCARD', sched) >= cap then return 'full' end
redis.call('SADD', sched, entry)
redis.call('HSET', data, entry, payload)
redis.call('LPUSH', queue, entry)
return 'queued'
"""

# Shared body: register a taken entry (already moved to the claims list) as running.
# Returns {'ok', data}, {'busy'} (same entry running elsewhere: put back at the tail) or {'missing'}.
_STARTED_BODY = """
local function started(sched, run, data, claims, queue, recovered, entry, node)
  if redis.call('HEXISTS', run, entry) == 1 then
    redis.call('LREM', claims, 1, entry)
    redis.call('LPUSH', queue, entry)
    return {'busy', entry}
  end
  local d = redis.call('HGET', data, entry)
  if not d then
    redis.call('LREM', claims, 1, entry)
    redis.call('SREM', sched, entry)
    return {'missing', entry}
  end
  redis.call('SREM', sched, entry)
  redis.call('HSET', run, entry, node)
  return {'ok', entry, d, redis.call('HGET', recovered, entry) or '0'}
end
"""

# Put back what one thread's claims list holds (after a Redis error cut a Work's bookkeeping).
# KEYS: sched, run, claims, queue ; ARGV: node
RELEASE = """
local n = 0
for _, e in ipairs(redis.call('LRANGE', KEYS[3], 0, -1)) do
  if redis.call('HGET', KEYS[2], e) == ARGV[1] then redis.call('HDEL', KEYS[2], e) end
  if redis.call('SISMEMBER', KEYS[1], e) == 0 then
    redis.call('SADD', KEYS[1], e)
    redis.call('RPUSH', KEYS[4], e)
  end
  n = n + 1
end
redis.call('DEL', KEYS[3])
return n
"""

# Start the entry at the head of a thread's claims list: sent in one pipeline right after the
# BLMOVE that put it there (Redis runs a client's pipelined commands in order, so this costs no
# extra round trip). The list only ever holds what its own thread took, so its head is that entry.
# KEYS: sched, run, data, claims, queue, recovered ; ARGV: node
STARTED_HEAD = (
    _STARTED_BODY
    + """
local entry = redis.call('LINDEX', KEYS[4], 0)
if not entry then return {'empty'} end
return started(KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], entry, ARGV[1])
"""
)

# Take the next entry without blocking. KEYS: sched, run, data, claims, queue, recovered
# ARGV: node
CLAIM = (
    _STARTED_BODY
    + """
local entry = redis.call('RPOPLPUSH', KEYS[5], KEYS[4])
if not entry then return {'empty'} end
return started(KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], entry, ARGV[1])
"""
)

# Finish an entry, then optionally take the next one (one round trip per Work when busy).
# KEYS: sched, run, data, claims, queue, count, cancel, dlq, recovered
# ARGV: entry, node, counters ('completed' | 'canceled' | 'completed,failed'), dead letter ('' for
# none; counted 'dead_lettered'), claim next ('1'/'0')
COMPLETE = (
    _STARTED_BODY
    + """
local sched, run, data, claims, queue = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local entry, node = ARGV[1], ARGV[2]
local status = 'stale'
if redis.call('LREM', claims, 1, entry) == 1 then
  status = 'done'
  if redis.call('HGET', run, entry) == node then redis.call('HDEL', run, entry) end
  if redis.call('SISMEMBER', sched, entry) == 0 then redis.call('HDEL', data, entry) end
  for counter in string.gmatch(ARGV[3], '[^,]+') do redis.call('HINCRBY', KEYS[6], counter, 1) end
  redis.call('SREM', KEYS[7], entry)
  redis.call('HDEL', KEYS[9], entry)
  if ARGV[4] ~= '' then
    redis.call('RPUSH', KEYS[8], ARGV[4])
    redis.call('HINCRBY', KEYS[6], 'dead_lettered', 1)
  end
end
if ARGV[5] ~= '1' then return {status} end
local nxt = redis.call('RPOPLPUSH', queue, claims)
if not nxt then return {status, 'empty'} end
local r = started(sched, run, data, claims, queue, KEYS[9], nxt, node)
return {status, r[1], r[2], r[3], r[4]}
"""
)

# Put a suspended entry back at the head of its queue with its new state.
# KEYS: sched, run, data, claims, queue, cancel ; ARGV: entry, node, payload
SUSPEND = """
if redis.call('LREM', KEYS[4], 1, ARGV[1]) == 0 then return 'stale' end
if redis.call('HGET', KEYS[2], ARGV[1]) == ARGV[2] then redis.call('HDEL', KEYS[2], ARGV[1]) end
redis.call('SREM', KEYS[6], ARGV[1])
if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 0 then
  redis.call('SADD', KEYS[1], ARGV[1])
  redis.call('HSET', KEYS[3], ARGV[1], ARGV[3])
  redis.call('RPUSH', KEYS[5], ARGV[1])
end
return 'suspended'
"""

# Cancel a waiting entry; ask a running one to stop. KEYS: sched, queue, data, count, run, cancel
# ARGV: entry.  Returns 1 when something was canceled or asked to stop.
CANCEL = """
local found = 0
if redis.call('SREM', KEYS[1], ARGV[1]) == 1 then
  redis.call('LREM', KEYS[2], 0, ARGV[1])
  if redis.call('HEXISTS', KEYS[5], ARGV[1]) == 0 then redis.call('HDEL', KEYS[3], ARGV[1]) end
  redis.call('HINCRBY', KEYS[4], 'canceled', 1)
  found = 1
end
if redis.call('HEXISTS', KEYS[5], ARGV[1]) == 1 then
  redis.call('SADD', KEYS[6], ARGV[1])
  found = 1
end
return found
"""

# KEYS: nodes ; ARGV: node, ttl ms.  Uses the Redis clock so nodes need not agree on time.
HEARTBEAT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
return now
"""

# Re-queue the entries held by nodes whose heartbeat expired (or by ARGV[6] when given: a node
# releasing its own claims at shutdown). KEYS: nodes
# ARGV: prefix, claim lists part, run part, sched part, queue part, node to release ('' for none),
#       recovered part (entries re-queued from a dead node are counted there), '1' to count the
#       released node's entries too (a node starting again after a crash under the same id)
RECOVER = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local p = ARGV[1]
local dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)
if ARGV[6] ~= '' then table.insert(dead, ARGV[6]) end
local n = 0
for _, node in ipairs(dead) do
  local lists = redis.call('HGETALL', p .. ARGV[2] .. node)
  for i = 1, #lists, 2 do
    local claims, q = lists[i], lists[i + 1]
    local run, sched, queue = p .. ARGV[3] .. q, p .. ARGV[4] .. q, p .. ARGV[5] .. q
    for _, e in ipairs(redis.call('LRANGE', claims, 0, -1)) do
      if redis.call('HGET', run, e) == node then redis.call('HDEL', run, e) end
      if node ~= ARGV[6] or ARGV[8] == '1' then redis.call('HINCRBY', p .. ARGV[7] .. q, e, 1) end
      if redis.call('SISMEMBER', sched, e) == 0 then
        redis.call('SADD', sched, e)
        redis.call('RPUSH', queue, e)
      end
      n = n + 1
    end
    redis.call('DEL', claims)
  end
  redis.call('DEL', p .. ARGV[2] .. node)
  redis.call('ZREM', KEYS[1], node)
end
return n
"""
