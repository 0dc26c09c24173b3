-- Queue one message on many channels of one shard (a group fan-out) in one call.
-- KEYS[1] sent-counter hash, KEYS[2] full-counter hash, KEYS[3] channel registry set,
-- KEYS[4] the key of the message's body stored out of line (unused when it is in line),
-- KEYS[5..] channel lists.
-- ARGV[1] expiry (seconds), ARGV[2] the body stored out of line ('' when in line), ARGV[3] how
-- long it is kept (ms), then for each list: item, capacity, channel name.
-- The body is stored only when some channel queued the message.
-- Returns the names of the channels that were full (their message was not queued).
local expiry = ARGV[1]
local full = {}
for i = 5, #KEYS do
  local a = 4 + (i - 5) * 3
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
if ARGV[2] ~= '' and #full < #KEYS - 4 then
  redis.call('SET', KEYS[4], ARGV[2], 'PX', ARGV[3])
end
return full
