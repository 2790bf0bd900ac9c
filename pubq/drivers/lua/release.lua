-- release.lua: put a held job back without counting the attempt (a hard stop). It keeps its
-- submit order, so it is back at the front of its priority (it was next anyway).
-- KEYS: the fixed list in _lib.lua.
-- ARGV: head (1-6), 7 id, 8 token.
-- Returns 1, or 0 when this lease no longer holds the job.
local id = ARGV[7]
local m = meta_get(id)
if not held(m, tonumber(ARGV[8])) then return 0 end
redis.call('ZREM', K_RESERVED, id)
drop_live(id)
m.attempt = m.attempt - 1
to_waiting(id, m)
wake(1)
return 1
