-- pause.lua: pause (the reserve step reads the flag) or resume the queue.
-- KEYS: the fixed list in _lib.lua.
-- ARGV: head (1-6), 7 '1' pause | '0' resume.
-- Returns 1 when the flag changed, else 0. Resume wakes blocked reserves (one token per waiting
-- job, capped, plus one for a due delayed job), so workers pick up at once.
if ARGV[7] == '1' then
  return redis.call('SET', K_PAUSED, f6(clock()), 'NX') and 1 or 0
end
local was = redis.call('DEL', K_PAUSED)
if was == 1 then wake(redis.call('ZCARD', K_WAITING) + 1) end
return was
