-- requeue_failed.lua: operator retry: failed registry -> waiting (or delayed); settles the entry.
-- KEYS: the fixed list in _lib.lua.
-- ARGV: head (1-3), 4 id, 5 reset_attempts (1|0), 6 delay (s).
-- Returns 1, or 0 when the id is not in the failed registry.
local id = ARGV[4]
local m = meta_get(id)
if not m or m.state ~= 'f' then return 0 end
detach(id, m)
if ARGV[5] == '1' then m.attempt = 0 end
m.retried = 0
next_seq(m)
reschedule(id, m, tonumber(ARGV[6]))
return 1
