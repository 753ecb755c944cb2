-- ARGV: 3 queue. Reply: {'ok', state, count, state, count, ...}.
tick()
local counts = {}
for _, id in ipairs(redis.call('ZRANGE', P .. ':all:' .. ARGV[3], 0, -1)) do
  local st = redis.call('HGET', job(id), 'state')
  if st then counts[st] = (counts[st] or 0) + 1 end
end
local out = {'ok'}
for st, n in pairs(counts) do table.insert(out, st); table.insert(out, tostring(n)) end
return out
