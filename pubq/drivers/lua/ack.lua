-- ack.lua: the job is done: count it and drop it, if this lease still holds it.
-- KEYS: the fixed list in _lib.lua.
-- ARGV: head (1-6), 7 id, 8 token.
-- Returns 1, or 0 when the lease is stale (reclaimed, released, removed): nothing counted.
return ack(ARGV[7], tonumber(ARGV[8]))
