-- failed_purge.lua: empty the failed registry (entries, failure records, payloads, histories).
-- KEYS: the fixed list in _lib.lua.
-- ARGV: head (1-6).
-- Returns how many entries went.
local ids = redis.call('ZRANGE', K_FAILED, 0, -1)
for i = 1, #ids, 500 do
  local chunk = {}
  for j = i, math.min(i + 499, #ids) do chunk[#chunk + 1] = ids[j] end
  redis.call('HDEL', K_PAYLOAD, unpack(chunk))
  redis.call('HDEL', K_META, unpack(chunk))
  redis.call('HDEL', K_HISTORY, unpack(chunk))
end
redis.call('DEL', K_FAILED, K_FAILINFO, K_UNSETTLED)
return #ids
