-- The message with this order is done: expect the next, and hand back the next one if it
-- was parked meanwhile (the caller runs it, so it stays the running worker).
-- KEYS[1] socket order hash, KEYS[2] parked messages, KEYS[3] sockets with parked messages
-- ARGV[1] order done, ARGV[2] ttl, ARGV[3] worker id, ARGV[4] socket
local nxt = tonumber(ARGV[1]) + 1
local current = tonumber(redis.call('HGET', KEYS[1], 'next') or '0')
if nxt > current then
  redis.call('HSET', KEYS[1], 'next', nxt)
else
  nxt = current
end
redis.call('EXPIRE', KEYS[1], ARGV[2])
local parked = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', nxt, 'WITHSCORES', 'LIMIT', 0, 1)
local out = false
if #parked > 0 then
  redis.call('ZREM', KEYS[2], parked[1])
  redis.call('HSET', KEYS[1], 'running', parked[2], 'owner', ARGV[3])
  out = parked[1]
else
  redis.call('HDEL', KEYS[1], 'running', 'owner')
end
if redis.call('ZCARD', KEYS[2]) == 0 then
  redis.call('SREM', KEYS[3], ARGV[4])
  redis.call('HDEL', KEYS[1], 'parked_at')
else
  local t = redis.call('TIME')
  redis.call('HSET', KEYS[1], 'parked_at', t[1] * 1000 + math.floor(t[2] / 1000))
end
return out
