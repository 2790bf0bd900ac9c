-- extend.lua: keep holding a reservation for `seconds` more from now (reclaim waits until then).
-- KEYS: the fixed list in _lib.lua.
-- ARGV: head (1-6), 7 id, 8 token, 9 seconds.
-- Returns 1, or 0 when this lease no longer holds the job.
local id = ARGV[7]
local m = meta_get(id)
if not held(m, tonumber(ARGV[8])) then return 0 end
local until_ = clock() + tonumber(ARGV[9])
local score = tonumber(redis.call('ZSCORE', K_RESERVED, id) or 0)
if until_ > score then redis.call('ZADD', K_RESERVED, f6(until_), id) end
return 1
