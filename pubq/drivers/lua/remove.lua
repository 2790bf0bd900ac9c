-- remove.lua: delete a job from whatever state it is in (failed registry included).
-- KEYS: the fixed list in _lib.lua.
-- ARGV: head (1-6), 7 id.
-- Returns 1, or 0 when the id is unknown (done, removed, never pushed).
local id = ARGV[7]
local m = meta_get(id)
if not m then
  return redis.call('HDEL', K_PAYLOAD, id)
end
detach(id, m)
forget(id)
return 1
