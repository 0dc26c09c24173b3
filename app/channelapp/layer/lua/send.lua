-- Queue one message on one channel, atomically enforcing its capacity.
-- KEYS[1] channel list, KEYS[2] sent-counter hash, KEYS[3] full-counter hash, KEYS[4] channel registry set
-- ARGV[1] item, ARGV[2] capacity, ARGV[3] expiry (seconds), ARGV[4] channel name (counter field)
-- Returns 1 when queued, 0 when the channel is full.
if redis.call('LLEN', KEYS[1]) >= tonumber(ARGV[2]) then
  redis.call('HINCRBY', KEYS[3], ARGV[4], 1)
  return 0
end
redis.call('RPUSH', KEYS[1], ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('HINCRBY', KEYS[2], ARGV[4], 1)
redis.call('SADD', KEYS[4], ARGV[4])
return 1
