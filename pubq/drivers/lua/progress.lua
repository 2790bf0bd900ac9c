-- progress.lua: store a running job's progress with its reservation.
-- KEYS: the fixed list in _lib.lua.
-- ARGV: head (1-6), 7 id, 8 token, 9 "fraction|message".
-- Returns 1, or 0 when this lease no longer holds the job.
local id = ARGV[7]
if not held(meta_get(id), tonumber(ARGV[8])) then return 0 end
redis.call('HSET', K_LIVE, live_progress(id), ARGV[9])
return 1
