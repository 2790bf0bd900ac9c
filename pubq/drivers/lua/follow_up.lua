-- follow_up.lua: keep a raising afterExec/afterError handler's error (capped list) and count it.
-- KEYS: the fixed list in _lib.lua.
-- ARGV: head (1-6), 7 record JSON.
-- Returns the record's sequence number (the follow_up counter after the increment).
local seq = redis.call('HINCRBY', K_STATS, 'follow_up', 1)
if FOLLOW_UP_LIMIT <= 0 then return seq end
redis.call('LPUSH', K_FOLLOWUPS, int(seq) .. '|' .. ARGV[7])
redis.call('LTRIM', K_FOLLOWUPS, 0, FOLLOW_UP_LIMIT - 1)
return seq
