-- ARGV: 3 id, 4 token, 5 result JSON. Reply: {'ok'}, {'missing'} or {'stale'}.
local id, token = ARGV[3], ARGV[4]
local h = held(id, token)
if h ~= 'ok' then return {h} end
redis.call('HSET', job(id), 'result', ARGV[5])
finish(id, 'succeeded')
return {'ok'}
