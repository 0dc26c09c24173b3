-- Statistics of every channel registered on this shard, in one call.
-- KEYS[1] channel registry set, KEYS[2] sent-counter hash, KEYS[3] full-counter hash
-- ARGV[1] channel key prefix
-- Returns a flat array: name, pending, head item (or false), sent, full, ...
local out = {}
for _, name in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local key = ARGV[1] .. name
  local pending = redis.call('LLEN', key)
  -- A process's reply list that is gone belongs to a process that is gone: forget it.
  if pending == 0 and string.find(name, '!', 1, true) then
    redis.call('SREM', KEYS[1], name)
    redis.call('HDEL', KEYS[2], name)
    redis.call('HDEL', KEYS[3], name)
  end
  local head = false
  if pending > 0 then head = redis.call('LINDEX', key, 0) end
  out[#out + 1] = name
  out[#out + 1] = pending
  out[#out + 1] = head
  out[#out + 1] = redis.call('HGET', KEYS[2], name) or 0
  out[#out + 1] = redis.call('HGET', KEYS[3], name) or 0
end
return out
