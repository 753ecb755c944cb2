-- ARGV: 3 id, 4 token. Hands a held job back unfinished: queued again in its old place,
-- the attempt it had started not counted. Reply: {'ok'}, {'missing'} or {'stale'}.
local id, token = ARGV[3], ARGV[4]
local h = held(id, token)
if h ~= 'ok' then return {h} end
redis.call('ZREM', P .. ':leases', id)
redis.call('HINCRBY', job(id), 'attempts', -1)
redis.call('HSET', job(id), 'token', '', 'lease_exp', '', 'updated', now)
make_ready(id)
wake(id)
return {'ok'}
