-- unfail.lua: another attempt follows after all (an afterError handler set retry, or the recorded
-- decision was a retry): failed-unsettled -> delayed (or waiting). The attempt count is kept.
-- KEYS: the fixed list in _lib.lua.
-- ARGV: head (1-6), 7 id, 8 token, 9 delay (s; <= 0 means waiting at once).
-- Returns 1, or 0 when the entry is not unsettled under this token.
local id = ARGV[7]
local m = meta_get(id)
if not unsettled(id, m, tonumber(ARGV[8])) then return 0 end
detach(id, m)
redis.call('HINCRBY', K_STATS, 'retried', 1)
next_seq(m)
reschedule(id, m, tonumber(ARGV[9]))
return 1
