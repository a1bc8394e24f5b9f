-- Claims stocks whose history changed since their last performance computation.
--
-- A claim is a lease: owner ARGV[1] holds it until now + ARGV[2] ms. A stock under a
-- live lease of another owner is not claimed, so two performance services never compute
-- the same change twice; a lease whose owner died expires and the change is claimed
-- again. At most ARGV[3] stocks are claimed.
-- Returns a flat list: stock, claimed version, ...
local owner, lease, limit = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local now = now_ms()
local out = {}
local stocks = redis.call('SMEMBERS', 'bourse:stocks')
table.sort(stocks)
for _, s in ipairs(stocks) do
  if #out >= limit * 2 then break end
  local m = redis.call('HMGET', hk(s, 'm'), 'v', 'pv', 'lo', 'lu')
  local v, pv = tonumber(m[1] or '0'), tonumber(m[2] or '0')
  local free = (not m[3]) or tonumber(m[4] or '0') < now
  if v > pv and free then
    redis.call('HSET', hk(s, 'm'), 'lo', owner, 'lu', now + lease)
    out[#out + 1] = s
    out[#out + 1] = tostring(v)
  end
end
return out
