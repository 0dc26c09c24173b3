-- The message with this order is done: expect the next, and hand back the next one if it
-- was parked meanwhile (the caller runs it).
-- KEYS[1] socket order hash, KEYS[2] parked messages; ARGV[1] order done, ARGV[2] ttl
local nxt = tonumber(ARGV[1]) + 1
local current = tonumber(redis.call('HGET', KEYS[1], 'next') or '0')
if nxt > current then
  redis.call('HSET', KEYS[1], 'next', nxt)
else
  nxt = current
end
redis.call('EXPIRE', KEYS[1], ARGV[2])
local parked = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', nxt, 'LIMIT', 0, 1)
if #parked > 0 then
  redis.call('ZREM', KEYS[2], parked[1])
  return parked[1]
end
return false
