-- reserve.lua: take the next due job (non-blocking; the driver BLPOPs the wake list in between).
-- KEYS: the fixed list in _lib.lua.
-- ARGV: head (1-3), 4 grace (s added to the deadline before reclaim may take the job).
-- Returns {1, id, payload, attempt, ttr, deadline, priority, pushed_at} or {0, next_due_in | ''}.
return reserve(clock(), tonumber(ARGV[4]))
