-- Shared by every script (prepended to each). ARGV[1] is the key prefix, ARGV[2] the
-- retention of finished jobs in ms. Time is the server's (`TIME`), the one clock every
-- worker shares. Every script that hands out or reports jobs first promotes due jobs,
-- reclaims expired leases and drops finished jobs past their retention (`tick()`);
-- enqueue and ack, the hot path, do not need to (a lease's expiry is checked by
-- `held`), so they skip it.
--
-- Replies are arrays whose first element says what happened: 'ok', 'missing' (no such
-- job), 'stale' (the lease is no longer held), 'finished' (with the state), and the
-- script's own words ('dead', 'retry', 'cancelled').

local P = ARGV[1]
local RETENTION = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

local function job(id) return P .. ':job:' .. id end

-- The ready set's order: higher priority first, then first in, first out.
local function score(priority, seq)
  return (1000 - tonumber(priority)) * 1e12 + tonumber(seq)
end

local function make_ready(id)
  local q, pr, seq = unpack(redis.call('HMGET', job(id), 'queue', 'priority', 'seq'))
  if q then
    redis.call('HSET', job(id), 'state', 'queued')
    redis.call('ZADD', P .. ':ready:' .. q, score(pr, seq), id)
  end
end

-- Wakes idle workers for a job just made ready (`redis_wake.rs` subscribes).
local function wake(id)
  redis.call('PUBLISH', P .. ':wake', redis.call('HGET', job(id), 'queue') or '')
end

local function finish(id, state)
  local k = job(id)
  local q, idem, seq = unpack(redis.call('HMGET', k, 'queue', 'idem', 'seq'))
  if idem and idem ~= '' then
    local ik = P .. ':idem:' .. q .. ':' .. idem
    if redis.call('GET', ik) == id then redis.call('DEL', ik) end
  end
  redis.call('ZREM', P .. ':leases', id)
  redis.call('HSET', k, 'state', state, 'finished', now, 'updated', now)
  if state == 'dead' then
    redis.call('ZADD', P .. ':dead:' .. q, tonumber(seq), id)
  else
    redis.call('ZADD', P .. ':finished', now, id)
  end
end

local function tick()
  local due = redis.call('ZRANGEBYSCORE', P .. ':waiting', '-inf', now, 'LIMIT', 0, 1000)
  for _, id in ipairs(due) do
    redis.call('ZREM', P .. ':waiting', id)
    make_ready(id)
  end
  local expired = redis.call('ZRANGEBYSCORE', P .. ':leases', '-inf', now, 'LIMIT', 0, 1000)
  for _, id in ipairs(expired) do
    redis.call('ZREM', P .. ':leases', id)
    local st, att, max = unpack(redis.call('HMGET', job(id), 'state', 'attempts', 'max'))
    if st == 'running' then
      redis.call('HSET', job(id), 'token', '', 'lease_exp', '', 'updated', now,
        'error', 'lease expired: the worker stopped or hung')
      if tonumber(att) >= tonumber(max) then finish(id, 'dead') else make_ready(id) end
    end
  end
  local old = redis.call('ZRANGEBYSCORE', P .. ':finished', '-inf', now - RETENTION, 'LIMIT', 0, 1000)
  for _, id in ipairs(old) do
    redis.call('ZREM', P .. ':finished', id)
    local q = redis.call('HGET', job(id), 'queue')
    if q then redis.call('ZREM', P .. ':all:' .. q, id) end
    redis.call('DEL', job(id))
  end
end

-- 'ok' when `token` holds the job's unexpired lease, else 'missing' or 'stale'.
local function held(id, token)
  local st, tok, exp = unpack(redis.call('HMGET', job(id), 'state', 'token', 'lease_exp'))
  if not st then return 'missing' end
  if st ~= 'running' or tok ~= token or tonumber(exp) == nil or tonumber(exp) <= now then
    return 'stale'
  end
  return 'ok'
end
