-- get.lua: what is stored for one id (ingesting the inbox first when the id is not stored yet).
-- KEYS: the fixed list in _lib.lua.
-- ARGV: head (1-6), 7 id, 8 'status' for the packed meta alone (status()), else ''.
-- Returns {} when unknown; {left} when not found while `left` inbox entries were not ingested yet
-- (the driver calls again); {meta} for 'status'; else {meta, payload, when, failure JSON,
-- unsettled 1|0, now, holder, progress, cancel requested 1|0, cancel reason}: when = due
-- time (delayed), failed_at (failed) or ''; failure and unsettled only mean something for failed
-- entries; now = the server clock (a delayed job already due is reported as waiting).
local id = ARGV[7]
local m, raw, left = find(id)
if left > 0 then return {left} end
if ARGV[8] == 'status' then
  if raw then return {raw} end
  return m and {redis.call('HGET', K_META, id)} or {}
end
if not m then return {} end
local when, record, pending = false, '{}', 0
if m.state == 'd' then
  when = redis.call('ZSCORE', K_DELAYED, wmember(m.seq, id))
elseif m.state == 'f' then
  when = redis.call('ZSCORE', K_FAILED, id)
  record = redis.call('HGET', K_FAILINFO, id) or '{}'
  pending = redis.call('ZSCORE', K_UNSETTLED, id) and 1 or 0
end
local cancel = redis.call('HGET', K_LIVE, live_cancel(id))
return {redis.call('HGET', K_META, id), redis.call('HGET', K_PAYLOAD, id) or '', when or '', record, pending,
        f6(clock()), redis.call('HGET', K_LIVE, id) or '', redis.call('HGET', K_LIVE, live_progress(id)) or '',
        cancel and 1 or 0, cancel or ''}
