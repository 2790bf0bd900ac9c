-- remove.lua: delete a job from whatever state it is in (failed registry included).
-- KEYS: the fixed list in _lib.lua.
-- ARGV: head (1-6), 7 id.
-- Returns 1, or 0 when the id is unknown (done, removed, never pushed), or -1 when it is not found
-- while inbox entries are left (the driver calls again).
local id = ARGV[7]
local m, raw, left = find(id)
if left > 0 then return -1 end
if not m then
  local gone = redis.call('HDEL', K_PAYLOAD, id)
  if raw then
    -- a meta that does not parse: take the job out of every structure that may hold it (#11)
    local seq = tonumber(string.match(raw, '^[^|]*|[^|]*|[^|]*|[^|]*|[^|]*|(%d+)|'))
    if seq then
      redis.call('ZREM', K_WAITING, wmember(seq, id))
      redis.call('ZREM', K_DELAYED, wmember(seq, id))
    end
    detach(id, {state = 'r'})
    detach(id, {state = 'f'})
    redis.call('HDEL', K_META, id)
    gone = 1
  end
  return gone
end
detach(id, m)
forget(id)
return 1
