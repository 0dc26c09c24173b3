-- Claim the protocol servers whose heartbeat expired: each is returned to one caller at a time.
-- KEYS[1] the servers sorted set (process -> deadline, ms), KEYS[2] the claims under way
-- (process -> end of the claim's lease, ms), KEYS[3] when this script last ran (ms)
-- ARGV[1] the prefix of the marks left for the swept (``<P>:server-swept:``), ARGV[2] how long
-- a mark is kept (ms), ARGV[3] a claim's lease (ms), ARGV[4] the longest gap between two calls
-- taken as the registry's clock running on (ms)
-- A claimed process leaves the servers set for the claims set; the caller removes it from
-- there once its cleanup is done (sweep_done). A claim whose lease ran out (its sweeper died
-- or failed) is claimed again.
-- A longer gap since the last call (the shard stalled, failed over or restarted with old
-- data, or nobody swept) says nothing about the servers: every deadline moves on by the gap
-- and nothing is claimed this time.
-- Returns the processes claimed.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local seen = redis.call('GET', KEYS[3])
redis.call('SET', KEYS[3], now, 'PX', ARGV[2])
local gap = seen and (now - tonumber(seen)) or nil
if gap == nil or gap > tonumber(ARGV[4]) then
  if gap ~= nil then
    for _, key in ipairs({KEYS[1], KEYS[2]}) do
      local entries = redis.call('ZRANGE', key, 0, -1, 'WITHSCORES')
      for i = 1, #entries, 2 do
        redis.call('ZADD', key, tonumber(entries[i + 1]) + gap, entries[i])
      end
    end
  end
  return {}
end
local lease = now + tonumber(ARGV[3])
local claimed = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, 16)
for _, process in ipairs(claimed) do
  redis.call('ZADD', KEYS[2], lease, process)
end
for _, process in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, 16)) do
  redis.call('ZREM', KEYS[1], process)
  redis.call('ZADD', KEYS[2], lease, process)
  redis.call('SET', ARGV[1] .. process, '1', 'PX', ARGV[2])
  claimed[#claimed + 1] = process
end
return claimed
