-- fail.lua: a failed attempt, written at once: reserved -> the failed registry, unsettled until
-- its afterError handlers are confirmed (settle.lua) or another attempt follows after all
-- (unfail.lua). failed_total is counted by settle, when the final failure has happened.
-- KEYS: the fixed list in _lib.lua.
-- ARGV: head (1-6), 7 id, 8 token, 9 failure JSON (error and the worker's retry decision),
-- 10 history_limit (failed attempts the job keeps).
-- Returns 1, or 0 when this lease no longer holds the job. Trims the registry to failed_limit.
local id = ARGV[7]
local m = meta_get(id)
if not held(m, tonumber(ARGV[8])) then return 0 end
redis.call('ZREM', K_RESERVED, id)
drop_live(id)
local now = clock()
m.state = 'f'
m.deadline = ''
meta_put(id, m)
redis.call('ZADD', K_FAILED, f6(now), id)
redis.call('HSET', K_FAILINFO, id, ARGV[9])
remember(id, m, ARGV[9], tonumber(ARGV[10]), now)
redis.call('ZADD', K_UNSETTLED, f6(now + SETTLE_WITHIN), id)
trim_failed()
return 1
