-- mark.lua: read or advance a named time stored with the queue (a scheduler's last tick).
-- KEYS: the fixed list in _lib.lua (K_MARKS: name -> "%.6f").
-- ARGV: head (1-6), then 7 name, 8 value ('' to read). Returns the stored value as a string, or
-- false when none is stored. An advance never moves a stored value back.
local name, value = ARGV[7], ARGV[8]
local old = redis.call('HGET', K_MARKS, name)
if value == '' then return old end
if old and tonumber(old) >= tonumber(value) then return old end
redis.call('HSET', K_MARKS, name, value)
return value
