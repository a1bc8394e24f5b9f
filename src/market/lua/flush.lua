-- Rebuilds the contract JSON of every stock changed since its last rebuild.
-- Returns the number of stocks rebuilt.
local now = now_ms()
local dirty = redis.call('SMEMBERS', 'bourse:dirty')
for _, s in ipairs(dirty) do materialize(s, now) end
return #dirty
