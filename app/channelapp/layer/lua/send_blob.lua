-- Queue one message whose body is stored out of line (see send.lua): the body is stored only
-- when the message is queued, so a refused one leaves nothing behind.
-- KEYS[1..4] as send.lua, KEYS[5] the body's key
-- ARGV[1..4] as send.lua, ARGV[5] the body, ARGV[6] how long the body is kept (ms)
-- Returns 1 when queued, 0 when the channel is full.
if redis.call('LLEN', KEYS[1]) >= tonumber(ARGV[2]) then
  redis.call('HINCRBY', KEYS[3], ARGV[4], 1)
  if string.find(ARGV[4], '!', 1, true) then  -- a shared reply list: see send.lua
    redis.call('SADD', KEYS[1] .. ':lost', string.sub(ARGV[1], 10, 9 + string.byte(ARGV[1], 9)))
    redis.call('EXPIRE', KEYS[1] .. ':lost', ARGV[3])
  end
  return 0
end
redis.call('SET', KEYS[5], ARGV[5], 'PX', ARGV[6])
redis.call('RPUSH', KEYS[1], ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('HINCRBY', KEYS[2], ARGV[4], 1)
redis.call('SADD', KEYS[4], ARGV[4])
return 1
