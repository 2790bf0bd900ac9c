-- ack_reserve_many.lua: ack what finished, then take up to n due jobs, in one round trip (the hot
-- path of a worker running several jobs at once).
-- KEYS: the fixed list in _lib.lua.
-- ARGV: head (1-6), 7 n, 8 holder of the new reservations, 9 ahead (see reserve_many.lua), then pairs
-- (id, token) of the acked ones.
-- Returns {{acked 1|0 per pair}, <reserve_many.lua reply...>}.
local flags = {}
for i = 10, #ARGV, 2 do
  flags[#flags + 1] = ack(ARGV[i], tonumber(ARGV[i + 1]))
end
local r = reserve_many(clock(), tonumber(ARGV[7]), ARGV[8], tonumber(ARGV[9]))
table.insert(r, 1, flags)
return r
