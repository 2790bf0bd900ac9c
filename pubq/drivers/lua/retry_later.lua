-- retry_later.lua: schedule the next attempt, from reserved (holding attempt) or from an unsettled
-- failed-registry entry of that attempt (an afterError handler set retry=True; failed_total is
-- then lowered again).
-- KEYS: the fixed list in _lib.lua.
-- ARGV: head (1-3), 4 id, 5 attempt, 6 delay (s; <= 0 means waiting at once).
-- Returns 1, or 0 when not allowed (reclaimed, removed, already moved).
local id = ARGV[4]
local m = meta_get(id)
if not m or m.attempt ~= tonumber(ARGV[5]) then return 0 end
if m.state == 'f' then
  if not redis.call('ZSCORE', K_UNSETTLED, id) then return 0 end
  -- the final failure did not happen after all: undo fail.lua's failed_total increment
  redis.call('HINCRBY', K_STATS, 'failed_total', -1)
elseif m.state ~= 'r' then
  return 0
end
detach(id, m)
-- an afterError handler may still turn this retry into the final failure (fail.lua)
m.retried = m.attempt
next_seq(m)
reschedule(id, m, tonumber(ARGV[6]))
return 1
