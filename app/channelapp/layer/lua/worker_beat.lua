-- Record one worker's load report with an expiry on the server's own clock, and drop expired ones.
-- KEYS[1] the workers hash (field: worker id, value: "<expires_ms> <report>")
-- ARGV[1] worker id, ARGV[2] time to live (ms), ARGV[3] report ("in_flight handled busy concurrency")
-- A worker that stops reporting (killed, partitioned) is gone from every reader's view once its
-- report expires; the hash itself expires when no worker reports at all.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[2])
redis.call('HSET', KEYS[1], ARGV[1], (now + ttl) .. ' ' .. ARGV[3])
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  local expires = tonumber(string.match(all[i + 1], '^(%d+)'))
  if expires == nil or expires < now then redis.call('HDEL', KEYS[1], all[i]) end
end
redis.call('PEXPIRE', KEYS[1], ttl * 4)
return 1
