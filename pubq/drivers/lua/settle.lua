-- settle.lua: the final failure happened (its handlers ran): count it once.
-- KEYS: the fixed list in _lib.lua.
-- ARGV: head (1-6), 7 id, 8 token.
-- Returns 1, or 0 when the entry is not unsettled under this token.
local id = ARGV[7]
local m = meta_get(id)
if not unsettled(id, m, tonumber(ARGV[8])) then return 0 end
redis.call('ZREM', K_UNSETTLED, id)
redis.call('HINCRBY', K_STATS, 'failed_total', 1)
local ok, record = pcall(cjson.decode, redis.call('HGET', K_FAILINFO, id) or '{}')
if ok and type(record) == 'table' and record.code == 'cancelled' then
  redis.call('HINCRBY', K_STATS, 'cancelled', 1)
end
return 1
