-- push.lua: store one or many jobs (push_many chunks, delayed and durable pushes), one atomic step;
-- or, for a plain push whose driver's id block is empty, reserve ids and queue it in the inbox.
-- KEYS: the fixed list in _lib.lua.
-- ARGV: head (1-6, see _lib.lua), 7 extra, then per job 4 values: payload, ttr, delay (s), priority.
-- extra '' stores the jobs (after ingesting the inbox, so they queue behind the plain pushes before
-- them). extra = a number (one job, no delay): reserve 1 + extra ids (the driver keeps the extra
-- ones as its id block) and LPUSH the job to the inbox as a plain push does, its 'delay' value
-- being the producer's clock ("%.6f"), so it keeps its place among the plain pushes.
-- Returns the first new id; the ids of the batch are consecutive, in ARGV order.
local HEAD = 7
if ARGV[HEAD] ~= '' then
  local extra = tonumber(ARGV[HEAD])
  local id = redis.call('HINCRBY', K_STATS, 'id', 1 + extra) - extra
  redis.call('LPUSH', K_INBOX, int(id) .. '|' .. ARGV[HEAD + 2] .. '|' .. ARGV[HEAD + 4] .. '|' .. ARGV[HEAD + 3] ..
                               '|' .. ARGV[HEAD + 1])
  return id
end
local n = (#ARGV - HEAD) / 4
wake(ingest(INGEST_RESERVE))
local first = redis.call('HINCRBY', K_STATS, 'id', n) - n + 1
local seq = redis.call('HINCRBY', K_STATS, 'seq', n) - n
local now = clock()
local pushed = f6(now)
local ready = 0
-- batched writes: one HSET/ZADD per BATCH jobs instead of one call per job
local BATCH = 250
local payloads, metas, members = {}, {}, {}
local function flush()
  if #payloads == 0 then return end
  redis.call('HSET', K_PAYLOAD, unpack(payloads))
  if #metas > 0 then
    redis.call('HSET', K_META, unpack(metas))
    redis.call('ZADD', K_WAITING, unpack(members))
  end
  payloads, metas, members = {}, {}, {}
end
for i = 0, n - 1 do
  local base = HEAD + 1 + i * 4
  local id = int(first + i)
  local ttr, prio, delay = tonumber(ARGV[base + 1]), tonumber(ARGV[base + 3]), tonumber(ARGV[base + 2])
  seq = seq + 1
  payloads[#payloads + 1] = id
  payloads[#payloads + 1] = ARGV[base]
  if delay > 0 then
    to_delayed(id, {state = 'd', attempt = 0, ttr = ttr, prio = prio, pushed = pushed, seq = seq,
                    deadline = '', lease = 0}, now + delay)
  else
    -- the meta_put format of a fresh waiting job, inlined
    metas[#metas + 1] = id
    metas[#metas + 1] = 'w|0|' .. int(ttr) .. '|' .. int(prio) .. '|' .. pushed .. '|' .. int(seq) .. '||0'
    members[#members + 1] = prio
    members[#members + 1] = wmember(seq, id)
    ready = ready + 1
  end
  if #payloads >= 2 * BATCH then flush() end
end
flush()
wake(ready)
return first
