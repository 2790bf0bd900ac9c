-- requeue_failed.lua: operator retry: failed registry -> waiting (or delayed); settles the entry.
-- KEYS: the fixed list in _lib.lua.
-- ARGV: head (1-6), 7 id, 8 reset_attempts (1|0), 9 delay (s).
-- Returns 1, or 0 when the id is not in the failed registry.
local id = ARGV[7]
local m = meta_get(id)
if not m or m.state ~= 'f' then return 0 end
detach(id, m)
if ARGV[8] == '1' then m.attempt = 0 end
next_seq(m)
reschedule(id, m, tonumber(ARGV[9]))
return 1
