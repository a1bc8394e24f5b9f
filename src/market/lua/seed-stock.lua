-- Replaces stock ARGV[1] by a fixture entry: its history becomes exactly the entry's
-- time and price lists; later ticks are appended after them. The pieces come ready-made
-- from the entry's own text (ARGV[2] the other fields as a JSON object, ARGV[3] the time
-- tokens, ARGV[4] the price tokens, ARGV[5] the latest hhmmss time, then time and price
-- token pairs for the index): nothing goes through cjson, which keeps 14 significant
-- digits of a number (999999999999999 would become 1e+15) and writes [] as {}.
--
-- A value under the key that is not a stock's contract JSON (another program's key) is
-- moved to bourse:quarantine:S (or bourse:quarantine:S:2, ... when that is taken: see
-- quarantine()), never overwritten. Returns the name it was moved to, or ''.
local s = ARGV[1]
local quarantined = ''
local kind = redis.call('TYPE', s).ok
if kind ~= 'none' then
  local ours = kind == 'string' and redis.call('SISMEMBER', 'bourse:stocks', s) == 1
  if not ours and kind == 'string' then
    local raw = redis.call('GET', s)
    local ok, doc = pcall(cjson.decode, raw)
    ours = ok and type(doc) == 'table' and string.match(raw, '^%s*{') ~= nil
      and (doc.time == nil or type(doc.time) == 'table')
      and (doc.price == nil or type(doc.price) == 'table')
  end
  if not ours then
    quarantined = quarantine(s)
  end
end
forget(s)
local flat = {}
for i = 6, #ARGV do flat[#flat + 1] = ARGV[i] end
local v = 0
if #flat > 0 then
  hset_many(hk(s, 'i'), flat)
  v = 1
end
redis.call('SET', hk(s, 'f'), ARGV[2])
redis.call('SET', hk(s, 't'), ARGV[3])
redis.call('SET', hk(s, 'p'), ARGV[4])
-- Seeded times are indexed at once: they need not be hhmmss, so the latest time says
-- nothing about them.
local times, toks = {}, {}
for i = 6, #ARGV, 2 do
  times[#times + 1] = ARGV[i]
  toks[#toks + 1] = ARGV[i + 1]
end
redis.call('HSET', hk(s, 'm'), 'v', v, 'pv', 0, 'mt', ARGV[5], 'ix', v, 'n', #times, 'g', next_gen())
rebuild_candles(s, index_of(times, toks, false))
redis.call('SADD', 'bourse:stocks', s)
materialize(s, now_ms())
return quarantined
