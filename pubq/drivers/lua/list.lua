-- list.lua: one page of the jobs in one state, in that state's order, after a keyset cursor (a
-- page of waiting jobs ingests the inbox first, bounded). Orders: waiting (priority, seq), delayed (due, seq), reserved (deadline + grace), failed
-- (failed_at); a page costs O(log n + limit) however deep it is.
-- KEYS: the fixed list in _lib.lua.
-- ARGV: head (1-6), 7 state (w | d | r | f), 8 limit, 9 after (the previous page's last id, or '').
-- Returns {more 1|0, rows...}; a row is {id, meta, payload, score, holder, progress, cancel 1|0,
-- cancel reason, failure JSON, unsettled 1|0}.
local state, limit, after = ARGV[7], tonumber(ARGV[8]), ARGV[9]
local key = ({w = K_WAITING, d = K_DELAYED, r = K_RESERVED, f = K_FAILED})[state]
if state == 'w' then ingest_read() end
local start = 0
if after ~= '' then
  local m = meta_get(after)
  if state == 'w' or state == 'd' then
    if m then
      local member = wmember(m.seq, after)
      local rank = redis.call('ZRANK', key, member)
      if rank then
        start = rank + 1
      elseif state == 'w' then
        -- the job left waiting: start where it sorted (binary search in its priority's band)
        local lo = redis.call('ZCOUNT', key, '-inf', '(' .. m.prio)
        local hi = redis.call('ZCOUNT', key, '-inf', m.prio)
        while lo < hi do
          local mid = math.floor((lo + hi) / 2)
          if redis.call('ZRANGE', key, mid, mid)[1] > member then hi = mid else lo = mid + 1 end
        end
        start = lo
      end
    end
  else
    local rank = redis.call('ZRANK', key, after)
    if rank then start = rank + 1 end
  end
end
local rows = redis.call('ZRANGE', key, start, start + limit, 'WITHSCORES')
local out = {0}
for i = 1, #rows, 2 do
  if (i + 1) / 2 > limit then
    out[1] = 1
    break
  end
  local id = string.match(rows[i], '(%d+)$')
  local cancel = redis.call('HGET', K_LIVE, live_cancel(id))
  out[#out + 1] = {tonumber(id), redis.call('HGET', K_META, id) or '', redis.call('HGET', K_PAYLOAD, id) or '',
                   rows[i + 1], redis.call('HGET', K_LIVE, id) or '', redis.call('HGET', K_LIVE, live_progress(id)) or '',
                   cancel and 1 or 0, cancel or '', redis.call('HGET', K_FAILINFO, id) or '{}',
                   redis.call('ZSCORE', K_UNSETTLED, id) and 1 or 0}
end
return out
