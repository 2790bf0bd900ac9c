-- reserve.lua: take the next due job under a new lease (non-blocking; in between, the driver blocks
-- in BLMOVE inbox -> stage).
-- KEYS: the fixed list in _lib.lua.
-- ARGV: head (1-6), 7 holder (worker id, may be '').
-- Returns {1, id, payload, attempt, ttr, deadline, token, priority, pushed_at} or
-- {0, next_due_in | ''}.
local r = reserve(clock(), ARGV[7])
wake_unclaimed()
return r
