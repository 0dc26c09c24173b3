-- Queue one message on one channel, atomically enforcing its capacity.
-- KEYS[1] channel list, KEYS[2] sent-counter hash, KEYS[3] full-counter hash, KEYS[4] channel registry set
-- ARGV[1] item, ARGV[2] capacity, ARGV[3] expiry (seconds), ARGV[4] channel name (counter field)
-- Returns 1 when queued, 0 when the channel is full.
if redis.call('LLEN', KEYS[1]) >= tonumber(ARGV[2]) then
  redis.call('HINCRBY', KEYS[3], ARGV[4], 1)
  if string.find(ARGV[4], '!', 1, true) then
    -- A process's shared reply list: name the reply channel that lost a message, so the
    -- process can tell its socket (the item's header holds the full name after 9 bytes).
    redis.call('SADD', KEYS[1] .. ':lost', string.sub(ARGV[1], 10, 9 + string.byte(ARGV[1], 9)))
    redis.call('EXPIRE', KEYS[1] .. ':lost', ARGV[3])
  end
  return 0
end
redis.call('RPUSH', KEYS[1], ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('HINCRBY', KEYS[2], ARGV[4], 1)
redis.call('SADD', KEYS[4], ARGV[4])
return 1
