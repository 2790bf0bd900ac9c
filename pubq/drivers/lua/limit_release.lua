-- limit_release.lua: a job's attempt ended: drop its slot of a limit key and make the key's first
-- waiting job due now (waiters that are no longer delayed are dropped on the way).
-- KEYS: the fixed list in _lib.lua.
-- ARGV: head (1-6), 7 id, 8 key.
-- Returns the id woken, or 0.
local id, key = ARGV[7], ARGV[8]
local raw = redis.call('HGET', K_LIMITS, key)
if not raw then return 0 end
local a, b, c, d = string.match(raw, '^([^|]*)|([^|]*)|([^|]*)|([^|]*)$')
if not a then
  redis.call('HDEL', K_LIMITS, key)
  return 0
end
local slots = {}
for sid, stok in string.gmatch(a, '(%d+):(%d+)') do
  if sid ~= id then slots[#slots + 1] = sid .. ':' .. stok end
end
local waiters = {}
for w in string.gmatch(c, '%d+') do waiters[#waiters + 1] = w end
local woken = 0
while #waiters > 0 and woken == 0 do
  local w = table.remove(waiters, 1)
  local wm = meta_get(w)
  if wm and wm.state == 'd' then
    redis.call('ZREM', K_DELAYED, wmember(wm.seq, w))
    to_waiting(w, wm)
    wake(1)
    woken = tonumber(w)
  end
end
if #slots == 0 and b == '' and #waiters == 0 and d == '' then
  redis.call('HDEL', K_LIMITS, key)
else
  redis.call('HSET', K_LIMITS, key, table.concat(slots, ',') .. '|' .. b .. '|' .. table.concat(waiters, ',') ..
    '|' .. d)
end
return woken
