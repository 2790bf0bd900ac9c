-- cancel.lua: cancel one job (spec §7.4). Waiting/delayed -> the failed registry, unsettled, under a
-- new lease (the caller fires afterError and settles it; reclaim hands it out if the caller dies);
-- reserved -> a cancel request stored with the job (its holder acts on it).
-- KEYS: the fixed list in _lib.lua.
-- ARGV: head (1-6), 7 id, 8 reason, 9 failure JSON (JobCancelledError, final).
-- Returns {'cancelled', id, payload, attempt, ttr, settle deadline, token, priority, pushed_at},
-- {'requested'}, {'finished'} (done or failed: an id this queue handed out), {'not_found'}, or
-- {'again'} (not found while inbox entries are left: the driver calls again).
local id = ARGV[7]
local m, _, left = find(id)
if left > 0 then return {'again'} end
if not m then
  local n = tonumber(id)
  if n and n >= 1 and n <= tonumber(redis.call('HGET', K_STATS, 'id') or 0) then return {'finished'} end
  return {'not_found'}
end
if m.state == 'f' then return {'finished'} end
if m.state == 'r' then
  redis.call('HSET', K_LIVE, live_cancel(id), ARGV[8])
  return {'requested'}
end
detach(id, m)
local now = clock()
m.state = 'f'
m.deadline = ''
m.lease = m.lease + 1
meta_put(id, m)
redis.call('ZADD', K_FAILED, f6(now), id)
redis.call('HSET', K_FAILINFO, id, ARGV[9])
local settle_by = f6(now + SETTLE_WITHIN)
redis.call('ZADD', K_UNSETTLED, settle_by, id)
local payload = redis.call('HGET', K_PAYLOAD, id) or ''
trim_failed()
return {'cancelled', tonumber(id), payload, m.attempt, m.ttr, settle_by, m.lease, m.prio, m.pushed}
