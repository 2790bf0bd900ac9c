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
--  11 wake       (no longer written: waking is the inbox's job; kept so clear drops an older
--                      version's tokens)
--  12 inbox      list  plain pushes and wake markers, newest at the left: "id|ttr|priority|pushed|"
--                      .. payload (pushed = the producer's clock, "%.6f"; the id from the driver's id
--                      block, reserved in stats `id`), or "~", a wake marker (count in stats
--                      `markers`, at most wake_cap). An idle worker blocks in BLMOVE inbox -> stage;
--                      ingest() (below) moves entries into the structures, oldest first
--  13 stage      list  entries an idle worker's BLMOVE took from the inbox (its reserve ingests
--                      them, or the next ingest of anyone: stage before inbox, oldest first)
--  14 paused     string set while the queue is paused (read by reserve itself); value: since when
--  15 live       hash  what a reservation carries besides its meta, one hash so an ack drops it
--                      with one HDEL: id -> worker id of the holder, id..':p' -> "fraction|message"
--                      (progress), id..':c' -> reason of a cancel requested (see live_* below),
--                      id..':a' -> '1' while the job is held ahead of its start by a prefetching
--                      worker (reclaim puts such a job back uncounted instead of failing it)
--  16 progress   (no longer written: folded into 15; kept in the list so clear drops old data)
--  17 cancel     (no longer written: folded into 15; kept in the list so clear drops old data)
--  18 workers    hash  worker id -> "last_seen|json" (the worker registry)
--  19 workerexp  zset  worker id, score = when its entry expires (swept by beats and readers;
--                      both worker keys also carry a key TTL, so an abandoned registry vanishes)
--  20 history    hash  id -> JSON list of the job's failed attempts, oldest first, capped (each
--                      {attempt, error_class, message, traceback, code, failed_at}); dropped with the job
--  (21-25 are given to push_unique.lua, mark.lua, the limit scripts, throughput.lua and clear.lua only:
--   the other scripts get 1-20)
--  21 unique    hash  unique key -> "job id|until|expires_at" (push_unique.lua; released keys are swept)
--  22 uniquedue zset  unique key, score = when the sweep looks at it next
--  23 marks     hash  name -> "%.6f" time (a scheduler's last tick; mark.lua)
--  24 limits     hash  limit key -> "slots|starts|waiters|booked" (limit_acquire.lua): the per-key
--                      concurrency slots ("id:token,..."), rate-window start times ("%.6f,...")
--                      and the ids of jobs waiting for a slot ("id,..."); dropped by clear
--  25 tput      hash  "<minute>d" / "<minute>f" -> jobs done / failed in that unix minute (throughput.lua:
--                      added by workers' beats, buckets older than the kept window trimmed, key TTL)
-- ARGV head (every script, the driver's policy): 1 wake_cap, 2 failed_limit, 3 follow_up_limit,
-- 4 grace, 5 hold, 6 settle_within (seconds); a script's own arguments start at ARGV[7].
-- Times are Redis TIME (unix seconds, µs); they are stored as "%.6f" strings.

if redis.replicate_commands then redis.replicate_commands() end

local K_STATS, K_PAYLOAD, K_META, K_WAITING = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local K_DELAYED, K_RESERVED, K_FAILED, K_FAILINFO = KEYS[5], KEYS[6], KEYS[7], KEYS[8]
local K_UNSETTLED, K_FOLLOWUPS, K_WAKE = KEYS[9], KEYS[10], KEYS[11]
local K_INBOX, K_STAGE = KEYS[12], KEYS[13]
local K_PAUSED, K_LIVE, K_OLDPROGRESS, K_OLDCANCEL = KEYS[14], KEYS[15], KEYS[16], KEYS[17]
local K_WORKERS, K_WORKEREXP = KEYS[18], KEYS[19]
local K_HISTORY = KEYS[20]
local K_UNIQUE, K_UNIQUEDUE, K_MARKS = KEYS[21], KEYS[22], KEYS[23]
local K_LIMITS = KEYS[24]
local K_TPUT = KEYS[25]
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

-- Wake up to n idle workers: "~" markers into the inbox (each served to one worker blocked in
-- BLMOVE, or dropped by the next ingest), never more than WAKE_CAP pending (count in stats).
local function wake(n)
  if n <= 0 then return end
  local room = WAKE_CAP - tonumber(redis.call('HGET', K_STATS, 'markers') or 0)
  if n > room then n = room end
  if n <= 0 then return end
  redis.call('HINCRBY', K_STATS, 'markers', n)
  while n > 0 do
    local t = {}
    for i = 1, math.min(n, 1000) do t[i] = '~' end
    redis.call('LPUSH', K_INBOX, unpack(t))
    n = n - #t
  end
end

-- Entries one ingest() moves at most: a reserve or a push takes INGEST_RESERVE, a read (get, counts,
-- list, remove, cancel) INGEST_READ, so one call never holds Redis for long; counts adds the rest.
local INGEST_RESERVE = 1000
local INGEST_READ = 10000
-- The meta stored for an inbox entry that does not parse (the raw entry is its payload), or, with
-- ': <head>' after it, for one whose numbers are out of range: no meta_get match, so reserve hands
-- the job out as an unreadable one (why: the meta after '?|') and the worker fails it as invalid (#11).
local BAD_ENTRY = '?|an inbox entry that does not parse'

-- Inbox and stage entries not ingested yet, wake markers not counted.
local function backlog()
  local n = redis.call('LLEN', K_INBOX) + redis.call('LLEN', K_STAGE) -
    tonumber(redis.call('HGET', K_STATS, 'markers') or 0)
  if n < 0 then return 0 end
  return n
end

-- One entry as {id, ttr, priority, pushed, payload}; nil when it does not parse; {id, false, meta,
-- payload} when its numbers are out of any range (stored under its id as an unreadable job, so the
-- producer's id finds its failure).
local function parse_entry(e)
  local _, stop, id, ttr, prio, pushed = string.find(e, '^(%d+)|(-?%d+)|(-?%d+)|([^|]*)|')
  if not id or #id > 15 or tonumber(id) < 1 then return nil end
  if #ttr > 15 or #prio > 15 or #pushed > 24 or string.find(ttr .. prio, '-', 1, true) or
      not string.find(pushed, '^%d+%.?%d*$') then
    return {id, false, BAD_ENTRY .. ': ' .. string.sub(e, 1, math.min(stop, 120)), string.sub(e, stop + 1)}
  end
  return {id, ttr, prio, pushed, string.sub(e, stop + 1)}
end

-- Whether a stored job (its raw meta) is the one this entry pushed: the same producer clock and the
-- same payload. An id block outlives its queue's counter when the counter is lost or rolled back
-- (a restart without persistence, FLUSHALL, a failover to a replica that missed the block's
-- HINCRBY): another producer's block may then hold the same ids, and its job must not be taken
-- for a repeat of this one.
local function same_push(id, raw, job)
  if not job[2] then  -- numbers out of range: stored with its BAD_ENTRY meta as it came
    return raw == job[3] and redis.call('HGET', K_PAYLOAD, id) == job[4]
  end
  local pushed = string.match(raw, '^[^|]*|[^|]*|[^|]*|[^|]*|([^|]*)|')
  return pushed == job[4] and redis.call('HGET', K_PAYLOAD, id) == job[5]
end

-- Move up to `limit` entries into the structures: the stage first, then the inbox, each from its
-- right end (oldest first), each stored as push.lua stores a waiting job (a fresh seq, so FIFO
-- holds across both lists). An entry whose id is stored already as the same push is skipped (a
-- push retried after a lost reply is stored once); one whose id holds another job (an id block
-- that outlived a lost counter, see same_push) is stored under a fresh id; one that does not
-- parse is stored under a fresh id with the raw entry as payload and BAD_ENTRY as meta, never
-- dropped (#11); markers are dropped. An id above the queue's counter raises the counter to it,
-- so no block handed out later holds it again. Returns the number of jobs stored (the caller wakes
-- sleepers for those it does not take).
local function ingest(limit)
  if redis.call('EXISTS', K_INBOX, K_STAGE) == 0 then return 0 end
  local top = tonumber(redis.call('HGET', K_STATS, 'id') or 0)
  local seen, stored, markers = {}, 0, 0
  for _, key in ipairs({K_STAGE, K_INBOX}) do
    while limit > 0 do
      local entries = redis.call('RPOP', key, math.min(limit, 500))
      if not entries then break end
      limit = limit - #entries
      -- a job with id false gets a fresh id: {false, ttr, prio, pushed, payload} (another producer's
      -- job under an id already used) or {false, false, meta, payload} (stored as an unreadable job)
      local jobs, ids, high = {}, {}, top
      for _, e in ipairs(entries) do
        if e == '~' then
          markers = markers + 1
        else
          local job = parse_entry(e)
          if not job then
            jobs[#jobs + 1] = {false, false, BAD_ENTRY, e}
          elseif seen[job[1]] then
            -- the same id twice in one ingest: a repeat is dropped, another producer's job is kept
            local first = seen[job[1]]
            if first[2] ~= job[2] or first[3] ~= job[3] or first[4] ~= job[4] or first[5] ~= job[5] then
              jobs[#jobs + 1] = {false, job[2], job[3], job[4], job[5]}
            end
          else
            seen[job[1]] = job
            jobs[#jobs + 1] = job
            ids[#ids + 1] = job[1]
            if tonumber(job[1]) > high then high = tonumber(job[1]) end
          end
        end
      end
      if high > top then
        top = high
        redis.call('HSET', K_STATS, 'id', int(top))
      end
      -- one HMGET per batch: an id stored already (by an earlier ingest) is a repeat or a collision
      local known = #ids > 0 and redis.call('HMGET', K_META, unpack(ids)) or {}
      local k, keep, fresh = 0, {}, 0
      for _, job in ipairs(jobs) do
        if job[1] then
          k = k + 1
          if not known[k] then
            keep[#keep + 1] = job
          elseif not same_push(job[1], known[k], job) then
            keep[#keep + 1] = {false, job[2], job[3], job[4], job[5]}
            fresh = fresh + 1
          end
        else
          keep[#keep + 1] = job
          fresh = fresh + 1
        end
      end
      if #keep > 0 then
        local seq = redis.call('HINCRBY', K_STATS, 'seq', #keep) - #keep
        if fresh > 0 then
          top = redis.call('HINCRBY', K_STATS, 'id', fresh)
          fresh = top - fresh
        end
        local payloads, metas, members = {}, {}, {}
        for _, job in ipairs(keep) do
          seq = seq + 1
          local id, meta, prio, payload = job[1], job[3], 0, job[4]
          if not id then
            fresh = fresh + 1
            id = int(fresh)
          end
          if job[2] then
            meta = 'w|0|' .. job[2] .. '|' .. job[3] .. '|' .. job[4] .. '|' .. int(seq) .. '||0'
            prio, payload = job[3], job[5]
          end
          payloads[#payloads + 1] = id
          payloads[#payloads + 1] = payload
          metas[#metas + 1] = id
          metas[#metas + 1] = meta
          members[#members + 1] = prio
          members[#members + 1] = wmember(seq, id)
        end
        redis.call('HSET', K_PAYLOAD, unpack(payloads))
        redis.call('HSET', K_META, unpack(metas))
        redis.call('ZADD', K_WAITING, unpack(members))
        stored = stored + #keep
      end
      if #entries < 500 then break end
    end
  end
  if markers > 0 and redis.call('HINCRBY', K_STATS, 'markers', -markers) < 0 then
    redis.call('HSET', K_STATS, 'markers', 0)
  end
  return stored
end

-- Before a read of waiting jobs or of the counts: ingest a read's worth, and wake sleepers for what
-- it stored (a worker may have gone to sleep between its reserve and its BLMOVE).
local function ingest_read() wake(ingest(INGEST_READ)) end

-- meta_get's answers for `id`, ingesting first when it is not stored but may still be in the inbox;
-- a third answer > 0: not found yet, and that many entries are left (the driver calls again).
local function find(id)
  local m, raw = meta_get(id)
  if m or raw then return m, raw, 0 end
  local n = tonumber(id)
  if not n or n < 1 then return nil, nil, 0 end
  if redis.call('EXISTS', K_INBOX, K_STAGE) == 0 then return nil, nil, 0 end
  ingest_read()
  m, raw = meta_get(id)
  if m or raw then return m, raw, 0 end
  return nil, nil, backlog()
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
  if string.sub(raw or '', 1, 2) == '?|' then return string.sub(raw, 3) end
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

-- Jobs the current script made waiting (ingested or promoted) and has not taken: wake_unclaimed()
-- wakes that many sleepers once the script's takes are done.
local unclaimed = 0

-- The reserve step: ingest the inbox (up to INGEST_RESERVE entries); nothing while paused; promote
-- due jobs, pop the lowest (priority, seq), skip stale members and jobs whose payload is gone, count
-- the attempt, take a new lease, record the deadline and the holder. A job whose payload is stored
-- but whose meta is missing or does not parse is reserved as it is (take_unreadable), with why as a
-- 10th value. Returns {1, id, payload, attempt, ttr, deadline, token, priority, pushed_at[, why]}
-- or {0, seconds until the next delayed job is due | ''}. `again`: this script already ingested,
-- read the pause flag and promoted due jobs in this call (reserve_many's later takes), so none of
-- it is done twice. `ahead`: the job is held ahead of its start by a prefetching worker (flag
-- id..':a' in the live hash). The caller calls wake_unclaimed() after its last take.
local function reserve(now, holder, again, ahead)
  if not again then
    unclaimed = ingest(INGEST_RESERVE)
    if redis.call('EXISTS', K_PAUSED) == 1 then
      -- the ingest dropped the markers: sleepers block until a push or resume wakes them
      unclaimed = 0
      return {0, ''}
    end
    unclaimed = unclaimed + promote_due(now)
  end
  local promoted = not again
  while true do
    local top = redis.call('ZPOPMIN', K_WAITING)
    if top[1] == nil and not promoted then
      -- a later take found waiting empty: due jobs past the first MOVE_BATCH may be left
      promoted = true
      local moved = promote_due(now)
      unclaimed = unclaimed + moved
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
      unclaimed = unclaimed - 1
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
      unclaimed = unclaimed - 1
      return {1, tonumber(id), payload, m.attempt, m.ttr, m.deadline, m.lease, m.prio, m.pushed}
    end
    -- else a stale member (the job moved on), or a job whose payload is gone: skip it
    if m and not payload then redis.call('HDEL', K_META, id) end
  end
  local first = redis.call('ZRANGE', K_DELAYED, 0, 0, 'WITHSCORES')
  if first[2] == nil then return {0, ''} end
  return {0, f6(tonumber(first[2]) - now)}
end

-- Other sleepers may take the rest of what this script made waiting.
local function wake_unclaimed()
  wake(unclaimed)
  unclaimed = 0
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
-- the leading 1 of each reserve() reply is dropped. Sleepers are woken for what was ingested or
-- promoted but not taken. The inbox is ingested, the pause flag is read and due jobs promoted once
-- per call
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
  wake_unclaimed()
  return out
end
