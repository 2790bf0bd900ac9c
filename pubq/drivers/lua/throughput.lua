-- throughput.lua: jobs finished per minute, added by workers' beats (never by the hot path).
-- KEYS: the fixed list in _lib.lua (this script gets all of them; it writes K_TPUT only).
-- ARGV: head (1-6), 7 mode ('add'), 8 done, 9 failed, 10 minute ('' = this Redis's current minute),
-- 11 minutes kept. A write into a minute not seen yet drops the fields of minutes older than the
-- kept window (the hash stays at about 2 x kept fields); the key's TTL covers the window, so the
-- throughput of a queue nobody works on vanishes by itself.
-- Returns 1.
local current = math.floor(clock() / 60)
local minute = current
if ARGV[10] ~= '' then minute = tonumber(ARGV[10]) end
local keep = tonumber(ARGV[11])
local fd = string.format('%dd', minute)
local fresh = redis.call('HEXISTS', K_TPUT, fd) == 0
redis.call('HINCRBY', K_TPUT, fd, ARGV[8])
redis.call('HINCRBY', K_TPUT, string.format('%df', minute), ARGV[9])
if fresh then
  for _, field in ipairs(redis.call('HKEYS', K_TPUT)) do
    local m = tonumber(string.sub(field, 1, -2))
    if m == nil or m < current - keep then redis.call('HDEL', K_TPUT, field) end
  end
end
redis.call('EXPIRE', K_TPUT, (keep + 2) * 60)
return 1
