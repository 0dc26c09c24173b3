-- What the autoscaler reads from one shard, in one call (a read: running it twice is harmless).
-- KEYS: the n channel lists, then (n > 0) the sent and full counter hashes, then (ARGV[2] == '1')
--       the workers hash
-- ARGV[1] n, ARGV[2] '1' to read the workers hash and the server's clock, ARGV[3..] the
--       channels' fields in the counter hashes
-- Returns {pending_1, head_1 or false, ..., pending_n, head_n, {sent}, {full}} for n > 0, then
-- {TIME} and {field, report, ...} of the workers hash when asked for.
local n = tonumber(ARGV[1])
local out = {}
for i = 1, n do
  local pending = redis.call('LLEN', KEYS[i])
  out[#out + 1] = pending
  if pending > 0 then
    out[#out + 1] = redis.call('LINDEX', KEYS[i], 0)
  else
    out[#out + 1] = false
  end
end
if n > 0 then
  out[#out + 1] = redis.call('HMGET', KEYS[n + 1], unpack(ARGV, 3, n + 2))
  out[#out + 1] = redis.call('HMGET', KEYS[n + 2], unpack(ARGV, 3, n + 2))
end
if ARGV[2] == '1' then
  out[#out + 1] = redis.call('TIME')
  out[#out + 1] = redis.call('HGETALL', KEYS[#KEYS])
end
return out
