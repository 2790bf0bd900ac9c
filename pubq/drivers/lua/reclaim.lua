-- reclaim.lua: claim lost reservations (deadline + grace passed) and unsettled failures (settle
-- deadline passed), lost ones first, each under a new lease token held for `hold` seconds. A lost
-- job that its worker held ahead of its start (a prefetch buffer, live flag id..':a') goes back to
-- waiting uncounted instead, unless a cancel was requested for it.
-- KEYS: the fixed list in _lib.lua.
-- ARGV: head (1-6), 7 limit.
-- Returns a list of entries:
--   {'lost', id, payload, attempt, ttr, new deadline, token, priority, pushed_at, overdue,
--    cancel requested 1|0, cancel reason[, why]}
--   (why: the job's meta is missing or unreadable; the caller fails it as an invalid job)
--   {'unsettled', id, payload, attempt, ttr, new settle deadline, token, priority, pushed_at,
--    failure JSON, failed_at}
local limit = tonumber(ARGV[7])
local now = clock()
local until_ = f6(now + HOLD)
local out = {}
local returned = 0
-- '(' : strictly past the deadline
local lost = redis.call('ZRANGEBYSCORE', K_RESERVED, '-inf', '(' .. f6(now), 'LIMIT', 0, limit)
for _, id in ipairs(lost) do
  local m, raw = meta_get(id)
  local payload = redis.call('HGET', K_PAYLOAD, id)
  local why = unreadable_why(m, raw, payload)
  if why then
    -- kept as a lost invalid job for the caller to fail, never dropped (#11)
    local u = take_unreadable(id, 0, now)
    out[#out + 1] = {'lost', tonumber(id), payload, u.attempt, u.ttr, u.deadline, u.lease, u.prio,
                     u.pushed, f6(0), 0, '', why}
  elseif m and payload and m.state == 'r' and redis.call('HGET', K_LIVE, id .. ':a')
      and not redis.call('HGET', K_LIVE, live_cancel(id)) then
    -- held ahead of its start by a prefetching worker that is gone: it may never have started, so
    -- it goes back uncounted, at the front of its priority (a job that did start and took its
    -- worker down is then the first of the next take, held as started, and counted from then on)
    redis.call('ZREM', K_RESERVED, id)
    drop_live(id)
    m.attempt = m.attempt - 1
    m.lease = m.lease + 1
    to_waiting(id, m)
    returned = returned + 1
  elseif m and payload and m.state == 'r' then
    local overdue = now - (tonumber(m.deadline) or now)
    -- same attempt, a new lease: the old holder's writes are refused from now on
    m.lease = m.lease + 1
    m.deadline = until_
    meta_put(id, m)
    redis.call('ZADD', K_RESERVED, until_, id)
    local cancel = redis.call('HGET', K_LIVE, live_cancel(id))
    out[#out + 1] = {'lost', tonumber(id), payload, m.attempt, m.ttr, until_, m.lease, m.prio, m.pushed,
                     f6(overdue), cancel and 1 or 0, cancel or ''}
  else
    redis.call('ZREM', K_RESERVED, id)  -- a stale entry (the job moved on), or its payload is gone
    if m and not payload then redis.call('HDEL', K_META, id) end
  end
end
if returned > 0 then wake(returned) end
if #out < limit then
  local pending = redis.call('ZRANGEBYSCORE', K_UNSETTLED, '-inf', '(' .. f6(now), 'LIMIT', 0,
                             limit - #out)
  for _, id in ipairs(pending) do
    local m = meta_get(id)
    local payload = redis.call('HGET', K_PAYLOAD, id)
    local failed_at = redis.call('ZSCORE', K_FAILED, id)
    if m and payload and failed_at and m.state == 'f' then
      m.lease = m.lease + 1
      meta_put(id, m)
      redis.call('ZADD', K_UNSETTLED, until_, id)
      out[#out + 1] = {'unsettled', tonumber(id), payload, m.attempt, m.ttr, until_, m.lease, m.prio,
                       m.pushed, redis.call('HGET', K_FAILINFO, id) or '{}', failed_at}
    else
      redis.call('ZREM', K_UNSETTLED, id)
    end
  end
end
return out
