-- Queue one message on many channels of one shard (a group fan-out) in one call. Members
-- whose channels share a list (the reply channels of one process) are queued together: one
-- LLEN and one RPUSH for all of them, so a room of thousands on one protocol server costs a
-- few commands, not a few per member.
-- KEYS[1] sent-counter hash, KEYS[2] full-counter hash, KEYS[3] channel registry set,
-- KEYS[4] the key of the message's body stored out of line (unused when it is in line),
-- KEYS[5..] channel lists, each once.
-- ARGV[1] expiry (seconds), ARGV[2] the body stored out of line ('' when in line), ARGV[3] how
-- long it is kept (ms), then for each list: the number n of its members, its capacity, its
-- channel (counter) name, then the n members' items.
-- A list holding capacity - k items takes the first k; the others are full, each counted
-- (and, for a shared reply list, its socket's channel noted as having lost a reply), as if
-- the members had been queued one by one. The body is stored only when something was queued.
-- Returns the names of the channels that were full, once per member not queued.
local expiry = ARGV[1]
local full = {}
local queued = 0
local a = 4
for i = 5, #KEYS do
  local n, capacity, name = tonumber(ARGV[a]), tonumber(ARGV[a + 1]), ARGV[a + 2]
  local first = a + 3
  local take = math.max(0, math.min(n, capacity - redis.call('LLEN', KEYS[i])))
  if take > 0 then
    local done = 0
    while done < take do  -- unpack() is bounded by the Lua stack: a thousand at a time
      local upto = math.min(take, done + 1000)
      redis.call('RPUSH', KEYS[i], unpack(ARGV, first + done, first + upto - 1))
      done = upto
    end
    redis.call('EXPIRE', KEYS[i], expiry)
    redis.call('HINCRBY', KEYS[1], name, take)
    redis.call('SADD', KEYS[3], name)
    queued = queued + take
  end
  if take < n then
    redis.call('HINCRBY', KEYS[2], name, n - take)
    local shared = string.find(name, '!', 1, true)  -- a shared reply list: see send.lua
    for k = first + take, first + n - 1 do
      if shared then
        local item = ARGV[k]
        redis.call('SADD', KEYS[i] .. ':lost', string.sub(item, 10, 9 + string.byte(item, 9)))
      end
      full[#full + 1] = name
    end
    if shared then
      redis.call('EXPIRE', KEYS[i] .. ':lost', expiry)
    end
  end
  a = first + n
end
if ARGV[2] ~= '' and queued > 0 then
  redis.call('SET', KEYS[4], ARGV[2], 'PX', ARGV[3])
end
return full
