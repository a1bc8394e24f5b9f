-- Gives back the leases owner ARGV[1] holds on stocks ARGV[2..] (claimed but not
-- computed, for example when the service closes), so another instance may claim them at
-- once instead of after the lease expires. Returns the number released.
local owner = ARGV[1]
local released = 0
for i = 2, #ARGV do
  local s = ARGV[i]
  if redis.call('HGET', hk(s, 'm'), 'lo') == owner then
    redis.call('HDEL', hk(s, 'm'), 'lo', 'lu')
    released = released + 1
  end
end
return released
