-- ack.lua: the job is done: count it and drop it, if this reservation still holds it.
-- KEYS: the fixed list in _lib.lua.
-- ARGV: head (1-3), 4 id, 5 attempt, 6 deadline ("%.6f", the reservation's).
-- Returns 1, or 0 when the reservation was reclaimed, released or removed (nothing counted).
return ack(ARGV[4], tonumber(ARGV[5]), ARGV[6])
