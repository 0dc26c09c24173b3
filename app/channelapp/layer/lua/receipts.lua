-- Wraps a sending script (its source takes the place of the marker line in the body below) so
-- that a call sent again, after its connection broke before the answer came, runs at most once:
-- the answer is kept as a receipt, in the same atomic step as the script's writes (so a promoted
-- replica has both or neither), and a call whose receipt is there gets the kept answer instead
-- of running.
-- KEYS: the script's own, then the sender's receipts hash.
-- ARGV: the script's own, then the call's number, the numbers of the receipts the sender no
-- longer needs (comma-separated) and how long the hash is kept (s) once the sender is silent.
local receipts = table.remove(KEYS)
local ttl = table.remove(ARGV)
local forget = table.remove(ARGV)
local number = table.remove(ARGV)
local kept = redis.call('HGET', receipts, number)
if kept then
  return cjson.decode(kept)
end
local result = (function()
--SCRIPT--
end)()
for done in string.gmatch(forget, '[^,]+') do
  redis.call('HDEL', receipts, done)
end
redis.call('HSET', receipts, number, cjson.encode(result))
redis.call('EXPIRE', receipts, ttl)
return result
