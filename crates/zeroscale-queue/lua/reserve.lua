-- ARGV: 3 lease ms, 4 token, 5 how many at most, 6.. queues. Reply: {'ok', then for each
-- job: id, queue, task, payload, attempt, max attempts, lease expiry ms, origin JSON
-- ('' for none)}, or {'empty'}.
tick()
local lease, token, want = tonumber(ARGV[3]), ARGV[4], tonumber(ARGV[5])
local exp = now + lease
local out = {'ok'}
for _ = 1, want do
  local best, best_score, best_q = nil, nil, nil
  for i = 6, #ARGV do
    local top = redis.call('ZRANGE', P .. ':ready:' .. ARGV[i], 0, 0, 'WITHSCORES')
    if top[1] and (best_score == nil or tonumber(top[2]) < best_score) then
      best, best_score, best_q = top[1], tonumber(top[2]), ARGV[i]
    end
  end
  if not best then break end
  redis.call('ZREM', P .. ':ready:' .. best_q, best)
  local att = redis.call('HINCRBY', job(best), 'attempts', 1)
  redis.call('HSET', job(best), 'state', 'running', 'token', token, 'lease_exp', exp, 'updated', now)
  redis.call('ZADD', P .. ':leases', exp, best)
  local f = redis.call('HMGET', job(best), 'queue', 'task', 'payload', 'max', 'origin')
  for _, v in ipairs({best, f[1], f[2], f[3], tostring(att), f[4], tostring(exp), f[5] or ''}) do
    out[#out + 1] = v
  end
end
if #out == 1 then return {'empty'} end
return out
