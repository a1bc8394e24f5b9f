-- Stores the performance ARGV[3] (a JSON number) of stock ARGV[1] computed by owner
-- ARGV[2], if that owner still holds the lease. Ticks that arrived during the
-- computation stay (the JSON is rebuilt from the history) and keep the stock changed,
-- so the next cycle computes them. Returns 1 when stored, 0 when the lease was lost.
local s, owner, perf = ARGV[1], ARGV[2], ARGV[3]
local m = redis.call('HMGET', hk(s, 'm'), 'lo', 'lv')
if m[1] ~= owner then return 0 end
local fields = cjson.decode(redis.call('GET', hk(s, 'f')) or '{}')
fields.performance = tonumber(perf)
redis.call('SET', hk(s, 'f'), cjson.encode(fields))
redis.call('HSET', hk(s, 'm'), 'pv', m[2])
redis.call('HDEL', hk(s, 'm'), 'lo', 'lu', 'lv')
materialize(s, now_ms())
return 1
