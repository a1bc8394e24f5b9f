-- Stores the performance ARGV[3] (a JSON number) of stock ARGV[1], computed by owner
-- ARGV[2] from the history at version ARGV[4], if that owner still holds the lease. The
-- version read with the prices is the one marked done, so ticks that arrived between the
-- claim and the read are not computed again, and ticks that arrived during the
-- computation keep the stock changed for the next cycle. They stay in the JSON, which is
-- rebuilt from the history. Returns 1 when stored, 0 when the lease was lost.
local s, owner, perf, version = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
if redis.call('HGET', hk(s, 'm'), 'lo') ~= owner then return 0 end
-- The other fields keep their text: a seeded stock has `performance` as its last field,
-- and only that number is replaced (cjson would keep 14 significant digits of every
-- other number and write [] as {}). Fields in another shape go through cjson.
local text = redis.call('GET', hk(s, 'f')) or '{}'
local head = string.match(text, '^(.*[{,]"performance":)[-+%d.eE]+}$')
if head then
  redis.call('SET', hk(s, 'f'), head .. perf .. '}')
else
  local fields = cjson.decode(text)
  fields.performance = tonumber(perf)
  redis.call('SET', hk(s, 'f'), cjson.encode(fields))
end
redis.call('HSET', hk(s, 'm'), 'pv', version, 'g', next_gen())
redis.call('HDEL', hk(s, 'm'), 'lo', 'lu')
materialize(s, now_ms())
return 1
