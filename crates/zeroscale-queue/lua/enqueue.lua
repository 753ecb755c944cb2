-- ARGV: 3 how many jobs, then for each job 9 values: id, queue, task, payload, max
-- attempts, priority, delay ms, idempotency key ('' for none), origin JSON ('' for
-- none). All are added or none.
-- Reply: {'ok', id...}, one id per job in order (the existing job's id for a repeated
-- idempotency key, also when the repeat is earlier in the same call). Idle workers are
-- woken (`PUBLISH <prefix>:wake <queue>`) once per call that made a job ready.
local out = {'ok'}
local woke = false
for i = 0, tonumber(ARGV[3]) - 1 do
  local b = 4 + 9 * i
  local id, q, task, payload = ARGV[b], ARGV[b + 1], ARGV[b + 2], ARGV[b + 3]
  local max, pr, delay, idem = tonumber(ARGV[b + 4]), tonumber(ARGV[b + 5]),
    tonumber(ARGV[b + 6]), ARGV[b + 7]
  local ctx = ARGV[b + 8]
  local existing = false
  if idem ~= '' then existing = redis.call('GET', P .. ':idem:' .. q .. ':' .. idem) end
  if existing then
    out[#out + 1] = existing
  else
    local seq = redis.call('INCR', P .. ':seq')
    local run_at = now + delay
    local state = 'queued'
    if delay > 0 then state = 'scheduled' end
    -- Fields without a value yet (progress, result, error, finished, token, lease_exp)
    -- are left out: a missing field reads as empty.
    redis.call('HSET', job(id), 'queue', q, 'task', task, 'payload', payload, 'state', state,
      'attempts', 0, 'max', max, 'priority', pr, 'created', now, 'updated', now,
      'run_at', run_at, 'idem', idem, 'seq', seq)
    if ctx ~= '' then redis.call('HSET', job(id), 'origin', ctx) end
    if idem ~= '' then redis.call('SET', P .. ':idem:' .. q .. ':' .. idem, id) end
    redis.call('ZADD', P .. ':all:' .. q, seq, id)
    if delay > 0 then
      redis.call('ZADD', P .. ':waiting', run_at, id)
    else
      redis.call('ZADD', P .. ':ready:' .. q, score(pr, seq), id)
      woke = q
    end
    out[#out + 1] = id
  end
end
if woke then redis.call('PUBLISH', P .. ':wake', woke) end
return out
