-- Should the socket's parked messages stop waiting? Yes when the worker recorded as running
-- their predecessor is dead (its liveness key is gone: killed), or when they have waited
-- longer than the timeout (the predecessor was lost or expired). Then the lowest parked
-- message is taken, expected from now on, and recorded as run by the calling worker.
-- KEYS[1] socket order hash, KEYS[2] parked messages, KEYS[3] sockets with parked messages
-- ARGV[1] socket, ARGV[2] worker id, ARGV[3] timeout ms, ARGV[4] liveness key prefix, ARGV[5] ttl
-- Returns {message, "dead"|"timeout"} or false.
if redis.call('ZCARD', KEYS[2]) == 0 then
  redis.call('SREM', KEYS[3], ARGV[1])
  return false
end
local state = redis.call('HMGET', KEYS[1], 'running', 'owner', 'parked_at')
local reason = false
if state[1] and state[2] and redis.call('EXISTS', ARGV[4] .. state[2]) == 0 then
  reason = 'dead'
else
  local t = redis.call('TIME')
  local now = t[1] * 1000 + math.floor(t[2] / 1000)
  if now - tonumber(state[3] or now) >= tonumber(ARGV[3]) then
    reason = 'timeout'
  end
end
if not reason then
  return false
end
local lowest = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
redis.call('ZREM', KEYS[2], lowest[1])
redis.call('HSET', KEYS[1], 'next', lowest[2], 'running', lowest[2], 'owner', ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[5])
if redis.call('ZCARD', KEYS[2]) == 0 then
  redis.call('SREM', KEYS[3], ARGV[1])
  redis.call('HDEL', KEYS[1], 'parked_at')
else
  local t = redis.call('TIME')
  redis.call('HSET', KEYS[1], 'parked_at', t[1] * 1000 + math.floor(t[2] / 1000))
end
return {lowest[1], reason}
