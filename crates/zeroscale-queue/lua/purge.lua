-- ARGV: 3 queue. Reply: {'ok', number of dead jobs removed}.
tick()
local key = P .. ':dead:' .. ARGV[3]
local ids = redis.call('ZRANGE', key, 0, -1)
for _, id in ipairs(ids) do
  redis.call('DEL', job(id))
  redis.call('ZREM', P .. ':all:' .. ARGV[3], id)
end
redis.call('DEL', key)
return {'ok', tostring(#ids)}
