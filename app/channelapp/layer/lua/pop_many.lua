-- Pop up to ARGV[1] messages from the lists KEYS[1..], taking them round-robin so one busy
-- channel cannot starve the others. Each list keeps its own order. One list (a process's
-- replies, a channel's own readers) is popped with one LPOP of a count.
-- Returns a flat array: key index (1-based), item, key index, item, ...
local want = tonumber(ARGV[1])
local out = {}
if #KEYS == 1 then
  local items = redis.call('LPOP', KEYS[1], want)
  if items then
    for j = 1, #items do
      out[#out + 1] = 1
      out[#out + 1] = items[j]
    end
  end
  return out
end
local got = 0
local active = true
while got < want and active do
  active = false
  for i = 1, #KEYS do
    if got >= want then break end
    local item = redis.call('LPOP', KEYS[i])
    if item then
      out[#out + 1] = i
      out[#out + 1] = item
      got = got + 1
      active = true
    end
  end
end
return out
