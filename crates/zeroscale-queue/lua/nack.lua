-- ARGV: 3 id, 4 token, 5 error, 6 the attempt the caller holds, 7 delay ms before the
-- retry (computed by the caller with core's `backoff_delay` for that attempt, or the
-- handler's retry-after), 8 '1' to give up (dead letters now). Reply: {'dead'}, {'retry', run at ms}, {'missing'} or
-- {'stale'} (also when the job's attempt is no longer the caller's).
tick()
local id, token = ARGV[3], ARGV[4]
local h = held(id, token)
if h ~= 'ok' then return {h} end
local att, max = unpack(redis.call('HMGET', job(id), 'attempts', 'max'))
att, max = tonumber(att), tonumber(max)
if att ~= tonumber(ARGV[6]) then return {'stale'} end
redis.call('HSET', job(id), 'error', ARGV[5], 'updated', now)
if att >= max or ARGV[8] == '1' then
  finish(id, 'dead')
  return {'dead'}
end
local run_at = now + tonumber(ARGV[7])
redis.call('ZREM', P .. ':leases', id)
redis.call('HSET', job(id), 'state', 'failed', 'run_at', run_at, 'token', '', 'lease_exp', '')
redis.call('ZADD', P .. ':waiting', run_at, id)
return {'retry', tostring(run_at)}
