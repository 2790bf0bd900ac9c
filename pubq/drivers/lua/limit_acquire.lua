-- limit_acquire.lua: take a run slot of a limit key for a reserved job, or put the job back.
-- The rule is pubq/drivers/limiter.py's `admit`, on the key's field of K_LIMITS:
-- "slots|starts|waiters|booked", slots "id:token,...", starts "%.6f,..." (oldest first), waiters
-- "id,...", booked "%.6f,..." (start times promised to jobs the rate window refused, in order).
-- A slot counts only while its job is still reserved under that token (its lease ended: freed).
-- KEYS: the fixed list in _lib.lua.
-- ARGV: head (1-6), 7 id, 8 token, 9 key, 10 concurrency (0: none), 11 rate (0: none), 12 per (s),
-- 13 jitter (s), 14 busy recheck (s per waiter ahead), 15 its cap (s), 16 waiters kept, 17 burst (0:
-- the sliding window; else a token bucket: starts holds its TAT, booked the next slot to promise).
-- Returns "0" when admitted, the delay ("%.6f") when put back, nil when this lease is stale; put
-- back while a cancel was requested: {delay, reason} (the caller then cancels the delayed job).
local id = ARGV[7]
local m = meta_get(id)
if not held(m, tonumber(ARGV[8])) then return nil end
local key = ARGV[9]
local conc, rate, per = tonumber(ARGV[10]), tonumber(ARGV[11]), tonumber(ARGV[12])
local recheck, recheck_max, max_waiters = tonumber(ARGV[14]), tonumber(ARGV[15]), tonumber(ARGV[16])
local burst = tonumber(ARGV[17] or '0')
local bucket = rate > 0 and burst > 0
local now = clock()
local nid = tonumber(id)
local slots, starts, waiters, booked = {}, {}, {}, {}
local raw = redis.call('HGET', K_LIMITS, key) or ''
local a, b, c, d = string.match(raw, '^([^|]*)|([^|]*)|([^|]*)|([^|]*)$')
if a then
  for sid, stok in string.gmatch(a, '(%d+):(%d+)') do
    if sid ~= id and held(meta_get(sid), tonumber(stok)) then slots[#slots + 1] = sid .. ':' .. stok end
  end
  if bucket then
    -- one time each: the TAT and the next promised slot; past ones mean a full bucket
    local tat, nxt = nil, nil
    for t in string.gmatch(b, '[^,]+') do
      local v = tonumber(t)
      if v and v > now and (not tat or v > tat) then tat = v end
    end
    for t in string.gmatch(d, '[^,]+') do
      local v = tonumber(t)
      if v and v > now and (not nxt or v > nxt) then nxt = v end
    end
    if tat then starts[1] = tat end
    if nxt then booked[1] = nxt end
  elseif rate > 0 then
    for t in string.gmatch(b, '[^,]+') do
      local v = tonumber(t)
      if v and v > now - per then starts[#starts + 1] = v end
    end
    for t in string.gmatch(d, '[^,]+') do
      local v = tonumber(t)
      if v and v > now - per then booked[#booked + 1] = v end
    end
  end
  for w in string.gmatch(c, '%d+') do waiters[#waiters + 1] = tonumber(w) end
end
while not bucket and rate > 0 and #starts > rate do table.remove(starts, 1) end
while #booked > max_waiters do table.remove(booked, 1) end

local function position()
  for i, w in ipairs(waiters) do if w == nid then return i end end
  return nil
end

local function save()
  if #slots == 0 and #starts == 0 and #waiters == 0 and #booked == 0 then
    redis.call('HDEL', K_LIMITS, key)
    return
  end
  local ts, ws, bs = {}, {}, {}
  for i, v in ipairs(starts) do ts[i] = f6(v) end
  for i, v in ipairs(waiters) do ws[i] = int(v) end
  for i, v in ipairs(booked) do bs[i] = f6(v) end
  redis.call('HSET', K_LIMITS, key, table.concat(slots, ',') .. '|' .. table.concat(ts, ',') .. '|' ..
    table.concat(ws, ',') .. '|' .. table.concat(bs, ','))
end

local wait = 0
local interval = 0
if rate > 0 then interval = per / rate end
local tat = starts[1] or now
if bucket then
  local allowed_at = tat - (burst - 1) * interval
  if allowed_at > now + 1e-9 then
    -- the bucket is empty: the next slot after the ones already promised
    local slot = math.max(allowed_at, booked[1] or now, now)
    booked = {slot + interval}
    wait = slot - now
  end
elseif rate > 0 and #starts >= rate then
  -- the next slot after the ones already booked: the window counts starts and bookings
  local ahead = {}
  for _, v in ipairs(starts) do ahead[#ahead + 1] = v end
  for _, v in ipairs(booked) do if v > now then ahead[#ahead + 1] = v end end
  table.sort(ahead)
  local slot = math.max(ahead[#ahead - rate + 1] + per, now)
  booked[#booked + 1] = slot
  wait = slot - now
end
if conc > 0 and #slots >= conc then
  local pos = position()
  if not pos then
    waiters[#waiters + 1] = nid
    table.sort(waiters)
    while #waiters > max_waiters do table.remove(waiters) end
    pos = position() or (#waiters + 1)
  end
  local back = math.min(recheck * pos, recheck_max)
  if back > wait then wait = back end
end

if wait > 0 then
  if wait < 0.001 then wait = 0.001 end
  local jitter = tonumber(ARGV[13])
  if jitter > 0 then wait = wait + jitter end
  redis.call('ZREM', K_RESERVED, id)
  local pending = redis.call('HGET', K_LIVE, live_cancel(id))
  drop_live(id)
  m.attempt = m.attempt - 1  -- the job never started: not an attempt
  next_seq(m)
  to_delayed(id, m, now + wait)
  redis.call('HINCRBY', K_STATS, 'limited', 1)
  save()
  if pending then return {f6(wait), pending} end
  return f6(wait)
end

if conc > 0 then slots[#slots + 1] = id .. ':' .. ARGV[8] end
if bucket then
  starts = {math.max(tat, now) + interval}
elseif rate > 0 then
  starts[#starts + 1] = now
end
local pos = position()
if pos then table.remove(waiters, pos) end
save()
return '0'
