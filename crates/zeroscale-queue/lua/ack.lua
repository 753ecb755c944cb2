-- ARGV: 3 how many, then for each job: id, token, result JSON. Reply: one word per job,
-- in order: 'ok', 'missing' or 'stale'.
local out = {}
for i = 0, tonumber(ARGV[3]) - 1 do
  local id, token, result = ARGV[4 + 3 * i], ARGV[5 + 3 * i], ARGV[6 + 3 * i]
  local h = held(id, token)
  if h == 'ok' then
    redis.call('HSET', job(id), 'result', result)
    finish(id, 'succeeded')
  end
  out[#out + 1] = h
end
return out
