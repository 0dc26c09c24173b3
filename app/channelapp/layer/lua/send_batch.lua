-- Queue a batch of sends of one shard in one call, in order, each with its own capacity check.
-- KEYS[1] sent-counter hash, KEYS[2] full-counter hash, KEYS[3] channel registry set,
-- KEYS[4..] one channel list per message (a channel repeats when it gets several messages).
-- ARGV[1] expiry (seconds), then for each message: item, capacity, channel name.
-- Returns one integer per message: 1 queued, 0 refused because the channel was full.
local expiry = ARGV[1]
local out = {}
for i = 4, #KEYS do
  local a = 2 + (i - 4) * 3
  local name = ARGV[a + 2]
  if redis.call('LLEN', KEYS[i]) >= tonumber(ARGV[a + 1]) then
    redis.call('HINCRBY', KEYS[2], name, 1)
    if string.find(name, '!', 1, true) then  -- a shared reply list: see send.lua
      redis.call('SADD', KEYS[i] .. ':lost', string.sub(ARGV[a], 10, 9 + string.byte(ARGV[a], 9)))
      redis.call('EXPIRE', KEYS[i] .. ':lost', expiry)
    end
    out[#out + 1] = 0
  else
    redis.call('RPUSH', KEYS[i], ARGV[a])
    redis.call('EXPIRE', KEYS[i], expiry)
    redis.call('HINCRBY', KEYS[1], name, 1)
    redis.call('SADD', KEYS[3], name)
    out[#out + 1] = 1
  end
end
return out
