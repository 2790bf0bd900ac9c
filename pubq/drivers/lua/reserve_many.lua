-- reserve_many.lua: take up to n due jobs under new leases in one step (a concurrent worker's free
-- slots), each exactly as reserve.lua takes one. Non-blocking; the driver blocks in BLMOVE
-- inbox -> stage in between.
-- KEYS: the fixed list in _lib.lua.
-- ARGV: head (1-6), 7 n, 8 holder (worker id, may be ''), 9 ahead (how many of the n are held ahead of
-- their start: a prefetching worker's buffer; optional, 0).
-- Returns {next_due_in | '', {id, payload, attempt, ttr, deadline, token, priority, pushed_at[, why]}, ...};
-- next_due_in is set only when nothing was taken.
return reserve_many(clock(), tonumber(ARGV[7]), ARGV[8], tonumber(ARGV[9] or 0))
