-- counts.lua: the info counters, O(1) each (ZCARD/HMGET) after a bounded ingest of the inbox, one
-- consistent snapshot.
-- KEYS: the fixed list in _lib.lua.
-- ARGV: head (1-6).
-- Returns {waiting, delayed, reserved, done, failed, failed_total, follow_up_failed, retried,
-- cancelled, limited}; waiting includes the inbox entries the ingest left (markers not counted).
ingest_read()
local s = redis.call('HMGET', K_STATS, 'done', 'failed_total', 'follow_up', 'retried', 'cancelled', 'limited')
return {redis.call('ZCARD', K_WAITING) + backlog(), redis.call('ZCARD', K_DELAYED), redis.call('ZCARD', K_RESERVED),
        tonumber(s[1] or 0), redis.call('ZCARD', K_FAILED), tonumber(s[2] or 0), tonumber(s[3] or 0),
        tonumber(s[4] or 0), tonumber(s[5] or 0), tonumber(s[6] or 0)}
