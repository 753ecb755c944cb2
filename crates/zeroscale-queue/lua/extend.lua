-- ARGV: 3 id, 4 token, 5 extension ms. Reply: {'ok', new expiry ms},
-- {'cancelled', now ms} (the job was cancelled while running), {'missing'} or {'stale'}.
tick()
local id, token = ARGV[3], ARGV[4]
local st, tok = unpack(redis.call('HMGET', job(id), 'state', 'token'))
if not st then return {'missing'} end
if st == 'cancelled' and tok == token then return {'cancelled', tostring(now)} end
local h = held(id, token)
if h ~= 'ok' then return {h} end
local exp = now + tonumber(ARGV[5])
redis.call('HSET', job(id), 'lease_exp', exp, 'updated', now)
redis.call('ZADD', P .. ':leases', exp, id)
return {'ok', tostring(exp)}
