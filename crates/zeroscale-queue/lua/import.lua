-- ARGV: 3 id, 4 queue, 5 task, 6 payload, 7 state (queued, scheduled, failed or dead),
-- 8 attempts, 9 max attempts, 10 priority, 11 run time (ms), 12 idempotency key ('' for
-- none), 13 created (ms), 14 updated (ms), 15 finished (ms, '' for none), 16 last error,
-- 17 progress JSON ('' for none), 18 origin JSON ('' for none). Reply: {'ok'}, or {'exists'} when a job with this id is
-- here already (nothing changes).
local id, q, state, pr, run_at, idem = ARGV[3], ARGV[4], ARGV[7], ARGV[10], ARGV[11], ARGV[12]
if redis.call('EXISTS', job(id)) == 1 then return {'exists'} end
local seq = redis.call('INCR', P .. ':seq')
redis.call('HSET', job(id), 'queue', q, 'task', ARGV[5], 'payload', ARGV[6], 'state', state,
  'attempts', ARGV[8], 'max', ARGV[9], 'priority', pr, 'created', ARGV[13],
  'updated', ARGV[14], 'run_at', run_at, 'idem', idem, 'seq', seq)
if ARGV[15] ~= '' then redis.call('HSET', job(id), 'finished', ARGV[15]) end
if ARGV[16] ~= '' then redis.call('HSET', job(id), 'error', ARGV[16]) end
if ARGV[17] ~= '' then redis.call('HSET', job(id), 'progress', ARGV[17]) end
if ARGV[18] ~= '' then redis.call('HSET', job(id), 'origin', ARGV[18]) end
redis.call('ZADD', P .. ':all:' .. q, seq, id)
if state == 'dead' then
  redis.call('ZADD', P .. ':dead:' .. q, seq, id)
  return {'ok'}
end
-- The key comes along unless a job here holds it already.
if idem ~= '' then redis.call('SET', P .. ':idem:' .. q .. ':' .. idem, id, 'NX') end
if state == 'queued' then
  redis.call('ZADD', P .. ':ready:' .. q, score(pr, seq), id)
else
  redis.call('ZADD', P .. ':waiting', tonumber(run_at), id)
end
return {'ok'}
