-- May the message with this order run now? Yes when it is the next one expected for its
-- socket; otherwise park it until its predecessor finishes.
-- KEYS[1] socket order hash (next), KEYS[2] parked messages (sorted set, score = order)
-- ARGV[1] order, ARGV[2] packed message, ARGV[3] ttl seconds
-- Returns 1 (run it) or 0 (parked).
local expected = tonumber(redis.call('HGET', KEYS[1], 'next') or '0')
if tonumber(ARGV[1]) <= expected then
  return 1
end
redis.call('ZADD', KEYS[2], ARGV[1], ARGV[2])
redis.call('EXPIRE', KEYS[2], ARGV[3])
return 0
