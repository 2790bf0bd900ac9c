-- release.lua: put a held job back without counting the attempt (hard stop, spec 5.8). It keeps
-- its submit order, so it is back at the front of its priority (it was next anyway).
-- KEYS: the fixed list in _lib.lua.
-- ARGV: head (1-3), 4 id, 5 attempt, 6 deadline (the reservation's).
-- Returns 1, or 0 when this reservation no longer holds the job.
local id = ARGV[4]
local m = meta_get(id)
if not held(m, tonumber(ARGV[5]), ARGV[6]) then return 0 end
redis.call('ZREM', K_RESERVED, id)
m.attempt = m.attempt - 1
to_waiting(id, m)
wake(1)
return 1
