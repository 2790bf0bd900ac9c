-- retry_later.lua: the attempt failed and another follows: reserved -> delayed (or waiting).
-- KEYS: the fixed list in _lib.lua.
-- ARGV: head (1-6), 7 id, 8 token, 9 delay (s; <= 0 means waiting at once), 10 failure JSON for
-- the job's attempt history ('' for none), 11 history_limit.
-- Returns 1, or 0 when this lease no longer holds the job.
local id = ARGV[7]
local m = meta_get(id)
if not held(m, tonumber(ARGV[8])) then return 0 end
redis.call('ZREM', K_RESERVED, id)
if ARGV[10] ~= '' then remember(id, m, ARGV[10], tonumber(ARGV[11]), clock()) end
drop_live(id)
redis.call('HINCRBY', K_STATS, 'retried', 1)
next_seq(m)
reschedule(id, m, tonumber(ARGV[9]))
return 1
