-- May the message with this order run now? Yes when it is the next one expected for its
-- socket (it is then recorded as running, with the worker running it); otherwise park it
-- until its predecessor finishes, and list the socket among those with parked messages.
-- KEYS[1] socket order hash (next, running, owner, parked_at), KEYS[2] parked messages
-- (sorted set, score = order), KEYS[3] sockets with parked messages (set)
-- ARGV[1] order, ARGV[2] packed message, ARGV[3] ttl seconds, ARGV[4] worker id, ARGV[5] socket
-- Returns 1 (run it) or 0 (parked).
-- A socket whose state is gone (it expired: nothing ran for the ttl, an idle socket) resumes
-- at the message that comes, from its second on: no predecessor of it is running or parked.
-- Its first (order 1) still waits, as it may be the disconnect of a connect not run yet.
local order = tonumber(ARGV[1])
local expected = tonumber(redis.call('HGET', KEYS[1], 'next') or '0')
if order > 1 and redis.call('EXISTS', KEYS[1]) == 0 and redis.call('ZCARD', KEYS[2]) == 0 then
  expected = order
  redis.call('HSET', KEYS[1], 'next', order)
end
if order <= expected then
  redis.call('HSET', KEYS[1], 'running', ARGV[1], 'owner', ARGV[4])
  redis.call('EXPIRE', KEYS[1], ARGV[3])
  return 1
end
if redis.call('ZCARD', KEYS[2]) == 0 then
  local t = redis.call('TIME')
  redis.call('HSET', KEYS[1], 'parked_at', t[1] * 1000 + math.floor(t[2] / 1000))
  redis.call('EXPIRE', KEYS[1], ARGV[3])
end
redis.call('ZADD', KEYS[2], ARGV[1], ARGV[2])
redis.call('EXPIRE', KEYS[2], ARGV[3])
redis.call('SADD', KEYS[3], ARGV[5])
return 0
