-- reserve.lua: take the next due job under a new lease (non-blocking; the driver BLPOPs the wake
-- list in between).
-- KEYS: the fixed list in _lib.lua.
-- ARGV: head (1-6), 7 holder (worker id, may be '').
-- Returns {1, id, payload, attempt, ttr, deadline, token, priority, pushed_at} or
-- {0, next_due_in | ''}.
return reserve(clock(), ARGV[7])
