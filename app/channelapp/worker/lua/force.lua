-- A parked message waited too long for its predecessor (lost or expired): take it anyway
-- and expect its order from now on. Returns the message, or false if it already ran.
-- KEYS[1] socket order hash, KEYS[2] parked messages; ARGV[1] order, ARGV[2] ttl
local parked = redis.call('ZRANGEBYSCORE', KEYS[2], ARGV[1], ARGV[1], 'LIMIT', 0, 1)
if #parked == 0 then
  return false
end
redis.call('ZREM', KEYS[2], parked[1])
redis.call('HSET', KEYS[1], 'next', ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[2])
return parked[1]
