-- _staged.lua: the woken worker's fast take, put in front of the prelude in reserve_woken and
-- reserve_many_woken (pubq/drivers/redis.py: _lua). A worker woken by its BLMOVE inbox -> stage runs
-- those scripts in the same round trip; in the common case (its staged entry is the only job
-- anywhere) the job is reserved here, straight from the stage, and the script returns before the
-- 500-line prelude is even defined: about half the server time of ingest() + reserve() on this path
-- (bench/README.md, "Pickup latency").
--
-- It writes exactly what ingest() then reserve() write for that entry (meta, payload, reserved
-- entry, live fields, one seq), and takes nothing unless all of these hold; otherwise nil, and the
-- script goes on to the full path: the stage holds exactly this entry and the inbox nothing; the
-- queue is not paused; nothing waits (a job of a higher priority, or older, may); no delayed job is
-- due; the entry parses as a job entry in every range ingest() checks, its id is not above the
-- queue's id counter (ingest() raises the counter) and has no meta yet (a repeated push, or another
-- producer's job under the same id: ingest() tells them apart).
-- KEYS: the fixed list in _lib.lua. ARGV: the head (4: grace). `ahead`: held ahead of its start (the
-- ':a' live flag, as reserve() sets it).
local function staged_take(holder, ahead)
  local K_STATS, K_PAYLOAD, K_META, K_WAITING = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
  local K_DELAYED, K_RESERVED, K_INBOX, K_STAGE = KEYS[5], KEYS[6], KEYS[12], KEYS[13]
  local K_PAUSED, K_LIVE = KEYS[14], KEYS[15]
  if redis.call('LLEN', K_STAGE) ~= 1 or redis.call('EXISTS', K_INBOX, K_PAUSED) ~= 0 or
      redis.call('ZCARD', K_WAITING) ~= 0 then
    return nil
  end
  local entry = redis.call('LINDEX', K_STAGE, 0)
  local _, stop, id, ttr, prio, pushed = string.find(entry, '^(%d+)|(%d+)|(%d+)|(%d+%.?%d*)|')
  if not id or #id > 15 or #ttr > 15 or #prio > 15 or #pushed > 24 then return nil end
  local n = tonumber(id)
  if n < 1 or n > tonumber(redis.call('HGET', K_STATS, 'id') or 0) then return nil end
  local t = redis.call('TIME')
  local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
  local first = redis.call('ZRANGE', K_DELAYED, 0, 0, 'WITHSCORES')
  if first[2] ~= nil and tonumber(first[2]) <= now then return nil end
  ttr, prio = tonumber(ttr), tonumber(prio)
  local seq = redis.call('HINCRBY', K_STATS, 'seq', 1)
  local deadline = now + ttr
  local dl = string.format('%.6f', deadline)
  local meta = string.format('r|1|%d|%d|', ttr, prio) .. pushed .. string.format('|%d|', seq) .. dl .. '|1'
  if redis.call('HSETNX', K_META, id, meta) == 0 then return nil end
  redis.call('RPOP', K_STAGE)
  local payload = string.sub(entry, stop + 1)
  redis.call('HSET', K_PAYLOAD, id, payload)
  redis.call('ZADD', K_RESERVED, string.format('%.6f', deadline + tonumber(ARGV[4])), id)
  if ahead and holder ~= '' then
    redis.call('HSET', K_LIVE, id, holder, id .. ':a', '1')
  elseif ahead then
    redis.call('HSET', K_LIVE, id .. ':a', '1')
  elseif holder ~= '' then
    redis.call('HSET', K_LIVE, id, holder)
  end
  return {n, payload, 1, ttr, dl, 1, prio, pushed}
end
