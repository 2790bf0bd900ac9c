-- push_unique.lua: push one job unless its unique key is held, one atomic step (spec §7.9).
-- KEYS: the fixed list in _lib.lua (K_UNIQUE: key -> "id|until|expires_at"; K_UNIQUEDUE: key by
-- when the sweep looks at it next).
-- ARGV: head (1-6), then 7 key, 8 until (done|start|ttl), 9 ttl seconds ('' for none), 10 sweep
-- count, 11 recheck seconds, then the job: 12 payload, 13 ttr, 14 delay (s), 15 priority.
-- Returns {1, new id} or {0, id of the job holding the key}.
-- Release is read, not written: a record holds its key while its job is in a state its `until`
-- names (see pubq/drivers/unique.py, the same rules).
local key, mode, ttl = ARGV[7], ARGV[8], ARGV[9]
-- plain pushes queued before this one keep their place ahead of it
wake(ingest(INGEST_RESERVE))
local sweep_n, recheck = tonumber(ARGV[10]), tonumber(ARGV[11])
local now = clock()

local function parse(raw)
  local id, u, exp = string.match(raw, '^(%d+)|(%a+)|([^|]*)$')
  if not id then return nil end
  return {id = id, mode = u, expires = tonumber(exp)}
end

local function holds(rec)
  if rec.expires and now >= rec.expires then return false end
  if rec.mode == 'ttl' then return true end
  local m, raw = meta_get(rec.id)
  if not m then
    -- an unreadable meta with a stored payload is still a job (handed out as invalid, then failed)
    return raw ~= nil and redis.call('HEXISTS', K_PAYLOAD, rec.id) == 1
  end
  if rec.mode == 'start' then return (m.state == 'w' or m.state == 'd') and m.attempt == 0 end
  if m.state == 'f' then return redis.call('ZSCORE', K_UNSETTLED, rec.id) ~= false end
  return true
end

local function next_check(rec)
  if rec.mode == 'ttl' then return rec.expires end
  if rec.expires and rec.expires < now + recheck then return rec.expires end
  return now + recheck
end

-- the sweep: a few records due for a look; released ones go, held ones are looked at later
local due = redis.call('ZRANGEBYSCORE', K_UNIQUEDUE, '-inf', f6(now), 'LIMIT', 0, sweep_n)
for _, k in ipairs(due) do
  local raw = redis.call('HGET', K_UNIQUE, k)
  local rec = raw and parse(raw)
  if rec and holds(rec) then
    redis.call('ZADD', K_UNIQUEDUE, f6(next_check(rec)), k)
  else
    redis.call('HDEL', K_UNIQUE, k)
    redis.call('ZREM', K_UNIQUEDUE, k)
  end
end

local raw = redis.call('HGET', K_UNIQUE, key)
local rec = raw and parse(raw)
if rec and holds(rec) then return {0, tonumber(rec.id)} end

-- the push of one job, as push.lua does it
local id = int(redis.call('HINCRBY', K_STATS, 'id', 1))
local seq = redis.call('HINCRBY', K_STATS, 'seq', 1)
local ttr, delay, prio = tonumber(ARGV[13]), tonumber(ARGV[14]), tonumber(ARGV[15])
local m = {state = 'w', attempt = 0, ttr = ttr, prio = prio, pushed = f6(now), seq = seq, deadline = '', lease = 0}
redis.call('HSET', K_PAYLOAD, id, ARGV[12])
if delay > 0 then
  to_delayed(id, m, now + delay)
else
  to_waiting(id, m)
  wake(1)
end

local new = {id = id, mode = mode, expires = nil}
if ttl ~= '' then new.expires = now + tonumber(ttl) end
redis.call('HSET', K_UNIQUE, key, id .. '|' .. mode .. '|' .. (new.expires and f6(new.expires) or ''))
redis.call('ZADD', K_UNIQUEDUE, f6(next_check(new)), key)
return {1, tonumber(id)}
