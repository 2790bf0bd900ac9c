-- failed_read.lua: read failed-registry entries, newest first (read only).
-- KEYS: the fixed list in _lib.lua.
-- ARGV: head (1-6), 7 mode ('id' | 'range'), 8 id or offset, 9 limit (range only).
-- Returns a list of {id, payload, meta, failure JSON, failed_at, unsettled 1|0}; mode 'id' adds
-- the job's attempt history JSON ('' when it has none) as a 7th value.
local function entry(id, failed_at)
  return {tonumber(id), redis.call('HGET', K_PAYLOAD, id) or '', redis.call('HGET', K_META, id) or '',
          redis.call('HGET', K_FAILINFO, id) or '{}', failed_at,
          redis.call('ZSCORE', K_UNSETTLED, id) and 1 or 0}
end
local out = {}
if ARGV[7] == 'id' then
  local at = redis.call('ZSCORE', K_FAILED, ARGV[8])
  if at then
    out[1] = entry(ARGV[8], at)
    out[1][7] = redis.call('HGET', K_HISTORY, ARGV[8]) or ''
  end
  return out
end
local offset = tonumber(ARGV[8])
local rows = redis.call('ZREVRANGE', K_FAILED, offset, offset + tonumber(ARGV[9]) - 1, 'WITHSCORES')
for i = 1, #rows, 2 do out[#out + 1] = entry(rows[i], rows[i + 1]) end
return out
