-- ARGV: 3 id. Reply: {'cancelled'}, {'missing'} or {'finished', state}.
tick()
local id = ARGV[3]
local st, q = unpack(redis.call('HMGET', job(id), 'state', 'queue'))
if not st then return {'missing'} end
if st == 'succeeded' or st == 'dead' or st == 'cancelled' then return {'finished', st} end
if st == 'queued' then redis.call('ZREM', P .. ':ready:' .. q, id)
elseif st == 'scheduled' or st == 'failed' then redis.call('ZREM', P .. ':waiting', id) end
finish(id, 'cancelled')
return {'cancelled'}
