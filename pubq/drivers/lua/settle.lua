-- settle.lua: the final-failure handlers of (id, attempt) have run.
-- KEYS: the fixed list in _lib.lua.
-- ARGV: head (1-3), 4 id, 5 attempt.
-- Returns 1, or 0 when nothing was pending for that attempt.
local id = ARGV[4]
local m = meta_get(id)
if not m or m.state ~= 'f' or m.attempt ~= tonumber(ARGV[5]) then return 0 end
return redis.call('ZREM', K_UNSETTLED, id)
