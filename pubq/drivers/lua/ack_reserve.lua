-- ack_reserve.lua: ack the previous job and reserve the next in one round trip (the hot path).
-- KEYS: the fixed list in _lib.lua.
-- ARGV: head (1-6), 7 id, 8 token (of the acked reservation), 9 holder of the next one.
-- Returns {acked 1|0, <reserve.lua reply...>}.
local ok = ack(ARGV[7], tonumber(ARGV[8]))
local r = reserve(clock(), ARGV[9])
wake_unclaimed()
table.insert(r, 1, ok)
return r
