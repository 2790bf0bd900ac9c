-- worker.lua: the worker registry. A beat is one call; entries expire by themselves: the sorted
-- set holds each entry's expiry, swept here, and both keys carry a key TTL at least as long as
-- the longest-lived entry, so a queue whose workers all vanished keeps nothing.
-- KEYS: the fixed list in _lib.lua.
-- ARGV: head (1-6), 7 mode, then: beat: 8 worker id, 9 JSON, 10 ttl (s); drop: 8 worker id;
-- list, peek: nothing.
-- Returns beat/drop: 1; list: {now, id, "last_seen|json", id, ...} (expired entries swept first);
-- peek: the same with nothing written (expired entries skipped, left for the next beat or list).
local now = clock()
local function sweep()
  local gone = redis.call('ZRANGEBYSCORE', K_WORKEREXP, '-inf', '(' .. f6(now), 'LIMIT', 0, 100)
  for _, wid in ipairs(gone) do
    redis.call('HDEL', K_WORKERS, wid)
    redis.call('ZREM', K_WORKEREXP, wid)
  end
end
local mode = ARGV[7]
if mode == 'beat' then
  local ttl = tonumber(ARGV[10])
  redis.call('HSET', K_WORKERS, ARGV[8], f6(now) .. '|' .. ARGV[9])
  redis.call('ZADD', K_WORKEREXP, f6(now + ttl), ARGV[8])
  local ms = math.ceil(ttl * 1000)
  for _, k in ipairs({K_WORKERS, K_WORKEREXP}) do
    if redis.call('PTTL', k) < ms then redis.call('PEXPIRE', k, ms) end
  end
  sweep()
  return 1
elseif mode == 'drop' then
  redis.call('HDEL', K_WORKERS, ARGV[8])
  redis.call('ZREM', K_WORKEREXP, ARGV[8])
  return 1
end
local out = {f6(now)}
if mode == 'peek' then
  local all = redis.call('HGETALL', K_WORKERS)
  for i = 1, #all, 2 do
    local exp = redis.call('ZSCORE', K_WORKEREXP, all[i])
    if exp and tonumber(exp) >= now then
      out[#out + 1] = all[i]
      out[#out + 1] = all[i + 1]
    end
  end
  return out
end
sweep()
for _, v in ipairs(redis.call('HGETALL', K_WORKERS)) do out[#out + 1] = v end
return out
