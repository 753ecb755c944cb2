-- ARGV: 3 queue, 4 state ('' for any), 5 list after this id ('' from the start), 6 limit.
-- Reply: {'ok', id, ...} in enqueue order.
tick()
local want, after, limit = ARGV[4], ARGV[5], tonumber(ARGV[6])
local out = {'ok'}
local started = after == ''
for _, id in ipairs(redis.call('ZRANGE', P .. ':all:' .. ARGV[3], 0, -1)) do
  if started then
    if want == '' or redis.call('HGET', job(id), 'state') == want then
      table.insert(out, id)
      if #out > limit then break end
    end
  elseif id == after then
    started = true
  end
end
return out
