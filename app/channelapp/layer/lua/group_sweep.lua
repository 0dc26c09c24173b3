-- Remove from groups every member channel of dead processes: their reply channels are
-- ``name.<process>!suffix``. KEYS group sorted sets; ARGV the marks ``.<process>!``
-- Returns how many members were removed.
local removed = 0
for _, key in ipairs(KEYS) do
  local gone = {}
  for _, member in ipairs(redis.call('ZRANGE', key, 0, -1)) do
    for _, mark in ipairs(ARGV) do
      if string.find(member, mark, 1, true) then
        gone[#gone + 1] = member
        break
      end
    end
  end
  for i = 1, #gone, 500 do
    redis.call('ZREM', key, unpack(gone, i, math.min(i + 499, #gone)))
  end
  removed = removed + #gone
end
return removed
