-- clear.lua: delete this queue's jobs (inbox included), failed entries, follow-up records, wake
-- markers and limit state. Only
-- the fixed key list below is touched (no KEYS/SCAN, so "q" never clears "q2" or "q.other"); the
-- pause flag and the worker registry stay;
-- the stats hash (id sequence, done, failed_total, follow_up) stays, so ids are never reused.
-- KEYS: the fixed list in _lib.lua.
-- ARGV: head (1-6).
-- Returns how many live jobs (waiting, delayed, reserved) went; failed entries are not counted.
local n = redis.call('HLEN', K_META) - redis.call('ZCARD', K_FAILED) + backlog()
redis.call('HDEL', K_STATS, 'markers')
redis.call('DEL', K_PAYLOAD, K_META, K_WAITING, K_DELAYED, K_RESERVED, K_FAILED, K_FAILINFO,
           K_UNSETTLED, K_FOLLOWUPS, K_WAKE, K_INBOX, K_STAGE, K_LIVE, K_OLDPROGRESS, K_OLDCANCEL, K_HISTORY, K_LIMITS)
return n
