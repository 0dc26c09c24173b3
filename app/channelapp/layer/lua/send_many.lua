-- Queue one message on many channels of one shard (a group fan-out) in one call.
-- KEYS[1] sent-counter hash, KEYS[2] full-counter hash, KEYS[3] channel registry set,
-- KEYS[4..] channel lists.
-- ARGV[1] expiry (seconds), then for each list: item, capacity, channel name.
-- Returns the names of the channels that were full (their message was not queued).
local expiry = ARGV[1]
local full = {}
for i = 4, #KEYS do
  local a = 2 + (i - 4) * 3
  local item, capacity, name = ARGV[a], tonumber(ARGV[a + 1]), ARGV[a + 2]
  if redis.call('LLEN', KEYS[i]) >= capacity then
    redis.call('HINCRBY', KEYS[2], name, 1)
    if string.find(name, '!', 1, true) then  -- a shared reply list: see send.lua
      redis.call('SADD', KEYS[i] .. ':lost', string.sub(item, 10, 9 + string.byte(item, 9)))
      redis.call('EXPIRE', KEYS[i] .. ':lost', expiry)
    end
    full[#full + 1] = name
  else
    redis.call('RPUSH', KEYS[i], item)
    redis.call('EXPIRE', KEYS[i], expiry)
    redis.call('HINCRBY', KEYS[1], name, 1)
    redis.call('SADD', KEYS[3], name)
  end
end
return full
