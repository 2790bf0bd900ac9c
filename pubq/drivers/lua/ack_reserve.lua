-- ack_reserve.lua: ack the previous job and reserve the next in one round trip (the hot path).
-- KEYS: the fixed list in _lib.lua.
-- ARGV: head (1-3), 4 id, 5 attempt, 6 deadline (of the acked reservation), 7 grace.
-- Returns {acked 1|0, <reserve.lua reply...>}.
local ok = ack(ARGV[4], tonumber(ARGV[5]), ARGV[6])
local r = reserve(clock(), tonumber(ARGV[7]))
table.insert(r, 1, ok)
return r
