-- _lib.lua: prelude shared by every pubq Redis script (pubq/drivers/redis.py prepends it).
--
-- KEYS (the same fixed list for every script; all share the "{channel}" hash tag, one cluster slot):
--   1 stats      hash  id (job id sequence), seq (waiting order), done, failed_total, follow_up
--                      -- counters; `clear` keeps this key
--   2 payload    hash  id -> payload bytes (opaque)
--   3 meta       hash  id -> "state|attempt|ttr|priority|pushed_at|seq|deadline|lease"
--                      state: w waiting, d delayed, r reserved, f failed registry; seq: the job's
--                      current order number; lease: the current lease token (a per-job counter:
--                      every reserve and reclaim takes the next value)
--   4 waiting    zset  score = priority, member = "%016x(seq):id" (equal scores sort by member,
--                      so ties run in enqueue order)
--   5 delayed    zset  score = due time, member = "%016x(seq):id" (same due: enqueue order)
--   6 reserved   zset  id, score = deadline + grace, or a recoverer's hold (when reclaim may take it)
--   7 failed     zset  id, score = failed_at (the failed registry)
--   8 failinfo   hash  id -> failure JSON (error_class, message, traceback, code)
--   9 unsettled  zset  id, score = settle deadline (failed attempts whose handlers are unconfirmed)
--  10 followups  list  "<seq>|<json>", newest first, capped at follow_up_limit
--  11 wake       list  wake-up tokens for BLPOP, capped at wake_cap (a lost token loses no job)
--  12 paused     string set while the queue is paused (read by reserve itself); value: since when
--  13 live       hash  what a reservation carries besides its meta, one hash so an ack drops it
--                      with one HDEL: id -> worker id of the holder, id..':p' -> "fraction|message"
--                      (progress), id..':c' -> reason of a cancel requested (see live_* below),
--                      id..':a' -> '1' while the job is held ahead of its start by a prefetching
--                      worker (reclaim puts such a job back uncounted instead of failing it)
--  14 progress   (no longer written: folded into 13; kept in the list so clear drops old data)
--  15 cancel     (no longer written: folded into 13; kept in the list so clear drops old data)
--  16 workers    hash  worker id -> "last_seen|json" (the worker registry)
--  17 workerexp  zset  worker id, score = when its entry expires (swept by beats and readers;
--                      both worker keys also carry a key TTL, so an abandoned registry vanishes)
--  18 history    hash  id -> JSON list of the job's failed attempts, oldest first, capped (each
--                      {attempt, error_class, message, traceback, code, failed_at}); dropped with the job
--  (19-23 are given to push_unique.lua, mark.lua, the limit scripts, throughput.lua and clear.lua only:
--   the other scripts get 1-18)
--  19 unique    hash  unique key -> "job id|until|expires_at" (push_unique.lua; released keys are swept)
--  20 uniquedue zset  unique key, score = when the sweep looks at it next
--  21 marks     hash  name -> "%.6f" time (a scheduler's last tick; mark.lua)
--  22 limits     hash  limit key -> "slots|starts|waiters|booked" (limit_acquire.lua): the per-key
--                      concurrency slots ("id:token,..."), rate-window start times ("%.6f,...")
--                      and the ids of jobs waiting for a slot ("id,..."); dropped by clear
--  23 tput      hash  "<minute>d" / "<minute>f" -> jobs done / failed in that unix minute (throughput.lua:
--                      added by workers' beats, buckets older than the kept window trimmed, key TTL)
-- ARGV head (every script, the driver's policy): 1 wake_cap, 2 failed_limit, 3 follow_up_limit,
-- 4 grace, 5 hold, 6 settle_within (seconds); a script's own arguments start at ARGV[7].
-- Times are Redis TIME (unix seconds, µs); they are stored as "%.6f" strings.

if redis.replicate_commands then redis.replicate_commands() end

local K_STATS, K_PAYLOAD, K_META, K_WAITING = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local K_DELAYED, K_RESERVED, K_FAILED, K_FAILINFO = KEYS[5], KEYS[6], KEYS[7], KEYS[8]
local K_UNSETTLED, K_FOLLOWUPS, K_WAKE = KEYS[9], KEYS[10], KEYS[11]
local K_PAUSED, K_LIVE, K_OLDPROGRESS, K_OLDCANCEL = KEYS[12], KEYS[13], KEYS[14], KEYS[15]
local K_WORKERS, K_WORKEREXP = KEYS[16], KEYS[17]
local K_HISTORY = KEYS[18]
local K_UNIQUE, K_UNIQUEDUE, K_MARKS = KEYS[19], KEYS[20], KEYS[21]
local K_LIMITS = KEYS[22]
local K_TPUT = KEYS[23]
local WAKE_CAP = tonumber(ARGV[1])
local FAILED_LIMIT = tonumber(ARGV[2])
local FOLLOW_UP_LIMIT = tonumber(ARGV[3])
local GRACE = tonumber(ARGV[4])
local HOLD = tonumber(ARGV[5])
local SETTLE_WITHIN = tonumber(ARGV[6])
-- due delayed jobs moved per reserve: bounds the work of one script call
local MOVE_BATCH = 100

local function clock()
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end

local function f6(x) return string.format('%.6f', x) end
local function int(x) return string.format('%d', x) end

-- The job's packed meta as a table; nil when there is none, and nil plus the raw text when it does
-- not parse (written by another version or by hand, a number %d could not hold): such a job is
-- handed out as an invalid one (take_unreadable), never dropped (#11).
local function meta_get(id)
  local raw = redis.call('HGET', K_META, id)
  if not raw then return nil end
  local s, a, t, p, pa, sq, dl, rt = string.match(raw,
    '^(%a)|(%d+)|(%d+)|(%d+)|([^|]*)|(%d+)|([^|]*)|(%d+)$')
  if not s then return nil, raw end
  return {state = s, attempt = tonumber(a), ttr = tonumber(t), prio = tonumber(p), pushed = pa,
          seq = tonumber(sq), deadline = dl, lease = tonumber(rt)}
end

local function meta_put(id, m)
  redis.call('HSET', K_META, id, m.state .. '|' .. int(m.attempt) .. '|' .. int(m.ttr) .. '|' ..
    int(m.prio) .. '|' .. m.pushed .. '|' .. int(m.seq) .. '|' .. m.deadline .. '|' .. int(m.lease))
end

local function wmember(seq, id) return string.format('%016x', seq) .. ':' .. id end

-- Add up to n wake-up tokens, never past WAKE_CAP (LLEN is O(1)); LPUSHes of <= 1000 values.
local function wake(n)
  local room = WAKE_CAP - redis.call('LLEN', K_WAKE)
  if n > room then n = room end
  while n > 0 do
    local t = {}
    for i = 1, math.min(n, 1000) do t[i] = '1' end
    redis.call('LPUSH', K_WAKE, unpack(t))
    n = n - #t
  end
end

-- A new order number: the job goes behind its priority's peers (push, retry, requeue, promotion).
local function next_seq(m) m.seq = redis.call('HINCRBY', K_STATS, 'seq', 1) end

-- Waiting with the job's current m.seq (release keeps it: back at the front of its priority).
local function to_waiting(id, m)
  m.state = 'w'
  m.deadline = ''
  meta_put(id, m)
  redis.call('ZADD', K_WAITING, m.prio, wmember(m.seq, id))
end

-- Delayed; wakes one sleeper when this is the new earliest due time so it shortens its wait.
local function to_delayed(id, m, due)
  m.state = 'd'
  m.deadline = ''
  meta_put(id, m)
  local first = redis.call('ZRANGE', K_DELAYED, 0, 0, 'WITHSCORES')
  redis.call('ZADD', K_DELAYED, f6(due), wmember(m.seq, id))
  if first[2] == nil or due < tonumber(first[2]) then wake(1) end
end

-- Back to waiting now (waking one worker) or to delayed after `delay` seconds.
local function reschedule(id, m, delay)
  if delay > 0 then
    to_delayed(id, m, clock() + delay)
  else
    to_waiting(id, m)
    wake(1)
  end
end

-- The fields of the live hash (K_LIVE) of one reservation: holder, progress, cancel request.
local function live_progress(id) return id .. ':p' end
local function live_cancel(id) return id .. ':c' end

-- Forget what a reservation carried besides its meta: holder, progress, cancel request (one HDEL).
local function drop_live(id)
  redis.call('HDEL', K_LIVE, id, id .. ':p', id .. ':c', id .. ':a')
end

-- Take a job out of whatever structure holds it (its payload and meta stay).
local function detach(id, m)
  if m.state == 'w' then
    redis.call('ZREM', K_WAITING, wmember(m.seq, id))
  elseif m.state == 'd' then
    redis.call('ZREM', K_DELAYED, wmember(m.seq, id))
  elseif m.state == 'r' then
    redis.call('ZREM', K_RESERVED, id)
    drop_live(id)
  elseif m.state == 'f' then
    redis.call('ZREM', K_FAILED, id)
    redis.call('ZREM', K_UNSETTLED, id)
    redis.call('HDEL', K_FAILINFO, id)
  end
end

local function forget(id)
  redis.call('HDEL', K_PAYLOAD, id)
  redis.call('HDEL', K_META, id)
  redis.call('HDEL', K_HISTORY, id)
end

-- Add a failed attempt to the job's history, keeping the newest `limit`. `record` is the failure
-- JSON the driver sends (error_class, message, traceback, code); the attempt and time come from here.
local function remember(id, m, record, limit, now)
  if limit <= 0 then return end
  local e = cjson.decode(record)
  local raw = redis.call('HGET', K_HISTORY, id)
  local list = raw and cjson.decode(raw) or {}
  list[#list + 1] = {attempt = m.attempt, error_class = e.error_class or '', message = e.message or '',
                     traceback = e.traceback or '', code = e.code or '', failed_at = f6(now)}
  while #list > limit do table.remove(list, 1) end
  redis.call('HSET', K_HISTORY, id, cjson.encode(list))
end

-- Drop the oldest failed-registry entries past FAILED_LIMIT, payloads included.
local function trim_failed()
  local extra = redis.call('ZCARD', K_FAILED) - FAILED_LIMIT
  if extra <= 0 then return end
  local old = redis.call('ZRANGE', K_FAILED, 0, extra - 1)
  redis.call('ZREMRANGEBYRANK', K_FAILED, 0, extra - 1)
  for _, id in ipairs(old) do
    redis.call('ZREM', K_UNSETTLED, id)
    redis.call('HDEL', K_FAILINFO, id)
    forget(id)
  end
end

-- Due delayed jobs become waiting (bounded batch), in due order, behind what already waits: they
-- are enqueued when they become due, as a list backend would append them.
local function promote_due(now)
  local due = redis.call('ZRANGEBYSCORE', K_DELAYED, '-inf', f6(now), 'LIMIT', 0, MOVE_BATCH)
  local moved = 0
  for _, member in ipairs(due) do
    redis.call('ZREM', K_DELAYED, member)
    local id = string.match(member, ':(%d+)$')
    local m = meta_get(id)
    if m and m.state == 'd' then
      next_seq(m)
      to_waiting(id, m)
      moved = moved + 1
    elseif not m and redis.call('HEXISTS', K_PAYLOAD, id) == 1 then
      -- its meta is missing or unreadable: reserve hands it out as an invalid job (#11)
      redis.call('ZADD', K_WAITING, 0, member)
      moved = moved + 1
    end
  end
  return moved
end

-- Why a job whose payload is stored cannot be run as it is (its meta is missing or does not
-- parse), or nil. `m, raw` are meta_get's answers. (A job whose payload is gone has nothing left to
-- run or keep: its structures are cleaned up as before.)
local function unreadable_why(m, raw, payload)
  if m or not payload then return nil end
  if raw then return 'unreadable meta ' .. string.sub(raw, 1, 200) end
  return 'no meta'
end

-- Reserve such a job for the caller as attempt 1 under a new lease, held for HOLD seconds, with a
-- fresh meta whose TTR is 0: outside every valid TTR, so whoever reads it again (a reclaimer after
-- the holder died) fails it as invalid too. The caller fails it as an invalid job (#11).
local function take_unreadable(id, seq, now)
  local m = {state = 'r', attempt = 1, ttr = 0, prio = 0, pushed = '0', seq = seq,
             deadline = f6(now + HOLD), lease = redis.call('HINCRBY', K_STATS, 'seq', 1)}
  meta_put(id, m)
  redis.call('ZADD', K_RESERVED, m.deadline, id)
  return m
end

local function member_seq(member)
  return tonumber(string.match(member, '^(%x+):'), 16) or 0
end

-- The reserve step: nothing while paused; promote due jobs, pop the lowest (priority, seq), skip
-- stale members and jobs whose payload is gone, count the attempt, take a new lease, record the
-- deadline and the holder. A job whose payload is stored but whose meta is missing or does not
-- parse is reserved as it is (take_unreadable), with why as a 10th value. Returns {1, id, payload,
-- attempt, ttr, deadline, token, priority, pushed_at[, why]} or {0, seconds until the next delayed
-- job is due | ''}. `again`: this script already read the pause flag and promoted due jobs in
-- this call (reserve_many's later takes), so neither is done twice.
local function reserve(now, holder, again, ahead)
  local moved = 0
  if not again then
    if redis.call('EXISTS', K_PAUSED) == 1 then
      -- sleepers block until resume feeds the wake list
      redis.call('DEL', K_WAKE)
      return {0, ''}
    end
    moved = promote_due(now)
  end
  local promoted = not again
  while true do
    local top = redis.call('ZPOPMIN', K_WAITING)
    if top[1] == nil and not promoted then
      -- a later take found waiting empty: due jobs past the first MOVE_BATCH may be left
      promoted = true
      moved = promote_due(now)
      if moved > 0 then top = redis.call('ZPOPMIN', K_WAITING) end
    end
    if top[1] == nil then break end
    local id = string.match(top[1], ':(%d+)$')
    local m, raw = meta_get(id)
    local payload = redis.call('HGET', K_PAYLOAD, id)
    local why = unreadable_why(m, raw, payload)
    if why then
      local u = take_unreadable(id, member_seq(top[1]), now)
      if holder and holder ~= '' then redis.call('HSET', K_LIVE, id, holder) end
      if moved > 1 then wake(moved - 1) end
      return {1, tonumber(id), payload, u.attempt, u.ttr, u.deadline, u.lease, u.prio, u.pushed, why}
    end
    if m and payload and m.state == 'w' then
      m.attempt = m.attempt + 1
      m.state = 'r'
      m.lease = m.lease + 1
      local deadline = now + m.ttr
      m.deadline = f6(deadline)
      meta_put(id, m)
      redis.call('ZADD', K_RESERVED, f6(deadline + GRACE), id)
      if ahead and holder and holder ~= '' then
        -- held ahead of its start by a prefetching worker: a reclaim puts it back uncounted
        redis.call('HSET', K_LIVE, id, holder, id .. ':a', '1')
      elseif ahead then
        redis.call('HSET', K_LIVE, id .. ':a', '1')
      elseif holder and holder ~= '' then
        redis.call('HSET', K_LIVE, id, holder)
      end
      -- other sleepers may take the rest of what was just promoted
      if moved > 1 then wake(moved - 1) end
      return {1, tonumber(id), payload, m.attempt, m.ttr, m.deadline, m.lease, m.prio, m.pushed}
    end
    -- else a stale member (the job moved on), or a job whose payload is gone: skip it
    if m and not payload then redis.call('HDEL', K_META, id) end
  end
  -- nothing due: drop stale tokens in the same step, so sleepers block until a new push
  redis.call('DEL', K_WAKE)
  local first = redis.call('ZRANGE', K_DELAYED, 0, 0, 'WITHSCORES')
  if first[2] == nil then return {0, ''} end
  return {0, f6(tonumber(first[2]) - now)}
end

-- The guard of every write that settles a reservation: the job is reserved under this lease token.
local function held(m, token)
  return m ~= nil and m.state == 'r' and m.lease == token
end

-- The guard of settle/unfail: a failed attempt, unsettled, whose lease is this token.
local function unsettled(id, m, token)
  return m ~= nil and m.state == 'f' and m.lease == token and redis.call('ZSCORE', K_UNSETTLED, id)
end

local function ack(id, token)
  local m = meta_get(id)
  if not held(m, token) then return 0 end
  redis.call('ZREM', K_RESERVED, id)
  drop_live(id)
  forget(id)
  redis.call('HINCRBY', K_STATS, 'done', 1)
  return 1
end

-- Up to n reserves in one step (a worker's free slots). {next_due_in | '', {reservation...}, ...};
-- the last `ahead` of the n are held ahead of their start (a prefetching worker's buffer: flag
-- id..':a' in the live hash, dropped with the rest of the live data when the job is settled);
-- the leading 1 of each reserve() reply is dropped. Sleepers are woken for what was promoted but
-- not taken (reserve() does that itself). The pause flag is read and due jobs promoted once per call
-- (one script: nothing changes in between), not once per job taken.
local function reserve_many(now, n, holder, ahead)
  local out = {''}
  for i = 1, n do
    local r = reserve(now, holder, i > 1, i > n - (ahead or 0))
    if r[1] ~= 1 then
      if #out == 1 then out[1] = r[2] end
      break
    end
    table.remove(r, 1)
    out[#out + 1] = r
  end
  return out
end
