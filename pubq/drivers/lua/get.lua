-- get.lua: what is stored for one id (read only).
-- KEYS: the fixed list in _lib.lua.
-- ARGV: head (1-3), 4 id.
-- Returns {} when unknown, else {meta, payload, when, failure JSON, unsettled 1|0}: when = due
-- time (delayed), failed_at (failed) or ''; the last two only for failed entries.
local id = ARGV[4]
local m = meta_get(id)
if not m then return {} end
local when, record, unsettled = false, '{}', 0
if m.state == 'd' then
  when = redis.call('ZSCORE', K_DELAYED, wmember(m.seq, id))
elseif m.state == 'f' then
  when = redis.call('ZSCORE', K_FAILED, id)
  record = redis.call('HGET', K_FAILINFO, id) or '{}'
  unsettled = redis.call('ZSCORE', K_UNSETTLED, id) and 1 or 0
end
return {redis.call('HGET', K_META, id), redis.call('HGET', K_PAYLOAD, id) or '', when or '', record, unsettled}
