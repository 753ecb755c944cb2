-- ARGV: 3 id, 4 token, 5 progress JSON. Reply: {'ok'}, {'missing'} or {'stale'}.
tick()
local id, token = ARGV[3], ARGV[4]
local h = held(id, token)
if h ~= 'ok' then return {h} end
redis.call('HSET', job(id), 'progress', ARGV[5], 'updated', now)
return {'ok'}
