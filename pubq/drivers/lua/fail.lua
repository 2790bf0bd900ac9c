-- fail.lua: final failure: into the failed registry at once, unsettled until its afterError
-- handlers are confirmed (settle.lua). Allowed from reserved holding attempt, or from
-- waiting/delayed when retry_later of that attempt put it there and no reserve happened since
-- (an afterError handler set retry=False).
-- KEYS: the fixed list in _lib.lua.
-- ARGV: head (1-3), 4 id, 5 attempt, 6 failure JSON, 7 settle_within (s).
-- Returns 1, or 0 when not allowed. Counts failed_total and trims the registry to failed_limit.
local id = ARGV[4]
local m = meta_get(id)
local attempt = tonumber(ARGV[5])
if not m or attempt < 1 or m.attempt ~= attempt then return 0 end
if m.state ~= 'r' and not ((m.state == 'w' or m.state == 'd') and m.retried == attempt) then return 0 end
detach(id, m)
if not redis.call('HGET', K_PAYLOAD, id) then
  forget(id)
  return 0
end
local now = clock()
m.state = 'f'
m.deadline = ''
m.retried = 0
meta_put(id, m)
redis.call('ZADD', K_FAILED, f6(now), id)
redis.call('HSET', K_FAILINFO, id, ARGV[6])
redis.call('ZADD', K_UNSETTLED, f6(now + tonumber(ARGV[7])), id)
redis.call('HINCRBY', K_STATS, 'failed_total', 1)
trim_failed()
return 1
