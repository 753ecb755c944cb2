-- ARGV: 3 id. Reply: {'ok'}, or {'missing'} when it is not a dead job.
tick()
local id = ARGV[3]
local st, q, idem = unpack(redis.call('HMGET', job(id), 'state', 'queue', 'idem'))
if st ~= 'dead' then return {'missing'} end
redis.call('ZREM', P .. ':dead:' .. q, id)
redis.call('HSET', job(id), 'attempts', 0, 'finished', '', 'updated', now, 'run_at', now,
  'token', '', 'lease_exp', '')
if idem and idem ~= '' then redis.call('SET', P .. ':idem:' .. q .. ':' .. idem, id, 'NX') end
make_ready(id)
wake(id)
return {'ok'}
