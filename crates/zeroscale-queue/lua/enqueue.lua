-- ARGV: 3 id, 4 queue, 5 task, 6 payload, 7 max attempts, 8 priority, 9 delay ms,
-- 10 idempotency key ('' for none). Reply: {'ok', id} (the existing job's id for a
-- repeated idempotency key).
local id, q, task, payload = ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local max, pr, delay, idem = tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9]), ARGV[10]
if idem ~= '' then
  local existing = redis.call('GET', P .. ':idem:' .. q .. ':' .. idem)
  if existing then return {'ok', existing} end
end
local seq = redis.call('INCR', P .. ':seq')
local run_at = now + delay
local state = 'queued'
if delay > 0 then state = 'scheduled' end
-- Fields without a value yet (progress, result, error, finished, token, lease_exp) are
-- left out: a missing field reads as empty.
redis.call('HSET', job(id), 'queue', q, 'task', task, 'payload', payload, 'state', state,
  'attempts', 0, 'max', max, 'priority', pr, 'created', now, 'updated', now,
  'run_at', run_at, 'idem', idem, 'seq', seq)
if idem ~= '' then redis.call('SET', P .. ':idem:' .. q .. ':' .. idem, id) end
redis.call('ZADD', P .. ':all:' .. q, seq, id)
if delay > 0 then
  redis.call('ZADD', P .. ':waiting', run_at, id)
else
  redis.call('ZADD', P .. ':ready:' .. q, score(pr, seq), id)
end
return {'ok', id}
