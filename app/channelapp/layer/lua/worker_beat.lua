-- Record one worker's load report with an expiry on the server's own clock.
-- KEYS[1] the workers hash (field: worker id, value: "<expires_ms> <report>"),
-- KEYS[2] when expired reports were last dropped (ms)
-- ARGV[1] worker id, ARGV[2] time to live (ms), ARGV[3] report ("in_flight handled busy concurrency")
-- A worker that stops reporting (killed, partitioned) is gone from every reader's view once its
-- report expires (readers compare with TIME); its field is dropped by the next sweep, at most one
-- per time to live whatever the number of workers; the hash expires when no worker reports.
-- TIME before a write needs effects replication, the default since Redis 5.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[2])
redis.call('HSET', KEYS[1], ARGV[1], (now + ttl) .. ' ' .. ARGV[3])
redis.call('PEXPIRE', KEYS[1], ttl * 4)
local swept = tonumber(redis.call('GET', KEYS[2]) or '0')
if now - swept >= ttl then
  redis.call('SET', KEYS[2], now, 'PX', ttl * 4)
  local all = redis.call('HGETALL', KEYS[1])
  for i = 1, #all, 2 do
    local expires = tonumber(string.match(all[i + 1], '^(%d+)'))
    if expires == nil or expires < now then redis.call('HDEL', KEYS[1], all[i]) end
  end
end
return 1
