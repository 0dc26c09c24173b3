-- A protocol server's heartbeat, with an expiry on the server's own clock.
-- KEYS[1] the servers sorted set (member: process, score: when it counts as dead, ms),
-- KEYS[2] the mark a sweep leaves for a process it took for dead
-- ARGV[1] process, ARGV[2] time to live (ms)
-- Returns 1 when the process was swept as dead since its last beat (not when the registry
-- was merely lost with a restarted server); it is not registered again then: the caller
-- goes on under a new process name.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local swept = redis.call('DEL', KEYS[2])
if swept == 0 then
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
end
return swept
