-- Shared functions of the stock history scripts. Prepended to every script.
--
-- A stock S is stored as pieces, so that adding a tick costs the same however long the
-- history is (rewriting one growing JSON document per tick would make ingest quadratic):
--   bourse:h:S:t  string  the JSON tokens of the `time` list, comma-separated (APPEND)
--   bourse:h:S:p  string  the JSON tokens of the `price` list, comma-separated (APPEND)
--   bourse:h:S:i  hash    time -> price token, kept once the stock has had a tick not
--                         later than its latest time (ix = 1): dedup of such ticks
--   bourse:h:S:f  string  the other fields of the contract JSON (id, performance, ...)
--   bourse:h:S:m  hash    v: history version, mt: latest hhmmss time in the history,
--                         ix: 1 when the index i is kept,
--                         pv: version of the last performance,
--                         lo/lu: performance lease owner and until (ms); at: ms
--                         of the last materialization
--                         g: the market generation of the stock's last change (below),
--                         n: the number of times in the history
--   bourse:h:S:c  hash    OHLC candles of the hhmmss times with a price, one field per
--                         bucket: `1m:093500`, `5m:093500`, `1h:090000` (bucket start) ->
--                         `open,high,low,close,count` (price tokens as in p)
--   S             string  the contract JSON, rebuilt from the pieces (materialized)
--   bourse:stocks set     every stock with a history; bourse:dirty set: not yet rebuilt
--   bourse:market:gen     string  a counter raised by every write that changes what the
--                         market read API shows (ticks, performance, a seed); a stock's
--                         m.g is the value of its last change, so cached views are tagged
--                         with it and a tag that is not current is never served
--   bourse:ticks  stream  the ticks as they are applied: one entry per stock and batch,
--                         s: stock, d: `{"stock":S,"time":[...],"price":[...]}` of the
--                         times that changed; trimmed to about ARGV's stream length
--
-- Candles are exact for the set of (time, price) of their bucket, whatever the order of
-- arrival: a batch of times all later than the stock's latest time extends them in place
-- (each new time is the latest of its bucket, so it is the close); any other batch
-- recomputes the 1m buckets it touched from the index i (60 fields at most each), then
-- their 5m buckets from 1m candles and their 1h buckets from 5m candles.

local function hk(s, part) return 'bourse:h:' .. s .. ':' .. part end

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- The times of a time text (`"090000","090001"`), unquoted, in order.
local function split_times(text)
  local out = {}
  for t in string.gmatch(text, '"([^"]*)"') do out[#out + 1] = t end
  return out
end

-- The tokens of a price text (`1,"",2.5`), in order.
local function split_tokens(text)
  local out = {}
  for tok in string.gmatch(text, '[^,]+') do out[#out + 1] = tok end
  return out
end

-- HSET with many field/value pairs, in chunks that stay under Lua's unpack limit.
local function hset_many(key, flat)
  local chunk = 4000
  for i = 1, #flat, chunk do
    redis.call('HSET', key, unpack(flat, i, math.min(i + chunk - 1, #flat)))
  end
end

-- Rebuilds the contract JSON under key s. Cost: copying the pieces once.
local function materialize(s, now)
  local fields = redis.call('GET', hk(s, 'f')) or '{}'
  local inner = string.sub(fields, 2, -2)
  local sep = ''
  if inner ~= '' then sep = ',' end
  local t = redis.call('GET', hk(s, 't')) or ''
  local p = redis.call('GET', hk(s, 'p')) or ''
  redis.call('SET', s, '{' .. inner .. sep .. '"time":[' .. t .. '],"price":[' .. p .. ']}')
  redis.call('HSET', hk(s, 'm'), 'at', now)
  redis.call('SREM', 'bourse:dirty', s)
end

-- Raises the market generation (see the top); once per script run.
local gen_now = nil
local function next_gen()
  if not gen_now then gen_now = redis.call('INCR', 'bourse:market:gen') end
  return gen_now
end

-- The candle fields of an hhmmss time t: 1m, 5m and 1h bucket starts; nil for another time.
local function buckets(t)
  if not string.match(t, '^%d%d%d%d%d%d$') then return nil end
  local hh, mm = string.sub(t, 1, 2), string.sub(t, 3, 4)
  local m5 = string.format('%02d', math.floor(tonumber(mm) / 5) * 5)
  return '1m:' .. hh .. mm .. '00', '5m:' .. hh .. m5 .. '00', '1h:' .. hh .. '0000'
end

-- A candle { o, h, l, c, n } (price tokens and a count) from its stored text, or nil.
local function candle_of(text)
  if not text then return nil end
  local o, h, l, c, n = string.match(text, '^([^,]*),([^,]*),([^,]*),([^,]*),(%d+)$')
  if not o then return nil end
  return { o, h, l, c, tonumber(n) }
end

local function candle_text(k) return k[1] .. ',' .. k[2] .. ',' .. k[3] .. ',' .. k[4] .. ',' .. k[5] end

-- Candle k extended by a later price token tok (k may be nil); returns the candle.
local function extend(k, tok)
  if not k then return { tok, tok, tok, tok, 1 } end
  local p = tonumber(tok)
  if p > tonumber(k[2]) then k[2] = tok end
  if p < tonumber(k[3]) then k[3] = tok end
  k[4] = tok
  k[5] = k[5] + 1
  return k
end

-- Candles in time order merged into one (nil entries skipped); nil when all are nil.
local function merge(list, count)
  local out = nil
  for i = 1, count do
    local k = list[i]
    if k then
      if not out then
        out = { k[1], k[2], k[3], k[4], k[5] }
      else
        if tonumber(k[2]) > tonumber(out[2]) then out[2] = k[2] end
        if tonumber(k[3]) < tonumber(out[3]) then out[3] = k[3] end
        out[4] = k[4]
        out[5] = out[5] + k[5]
      end
    end
  end
  return out
end

-- Writes candles (field -> candle or false for none) of stock s in one HSET and one HDEL.
local function store_candles(s, cs)
  local set, del = {}, {}
  for f, k in pairs(cs) do
    if k then
      set[#set + 1] = f
      set[#set + 1] = candle_text(k)
    else
      del[#del + 1] = f
    end
  end
  if #set > 0 then hset_many(hk(s, 'c'), set) end
  if #del > 0 then redis.call('HDEL', hk(s, 'c'), unpack(del)) end
end

-- Recomputes the 5m and 1h candles of stock s over the given 1m bucket fields, whose
-- candles are in cs (field -> candle or false); every other 1m or 5m candle is read.
local function rollup(s, cs, minutes)
  local function rebuild(parents, width, step, child)
    for parent in pairs(parents) do
      local hh = string.sub(parent, 4, 5)
      local first = tonumber(string.sub(parent, 6, 7))
      local fields = {}
      for i = 0, width - 1 do
        local mm = first + i * step
        fields[#fields + 1] = child .. ':' .. hh .. string.format('%02d', mm) .. '00'
      end
      local stored = redis.call('HMGET', hk(s, 'c'), unpack(fields))
      local list = {}
      for i = 1, width do
        local known = cs[fields[i]]
        if known ~= nil then list[i] = known or nil else list[i] = candle_of(stored[i]) end
      end
      cs[parent] = merge(list, width) or false
    end
  end
  local fives, hours = {}, {}
  for f in pairs(minutes) do
    local _, m5, h1 = buckets(string.sub(f, 4))
    fives[m5] = true
    hours[h1] = true
  end
  rebuild(fives, 5, 1, '1m')
  rebuild(hours, 12, 5, '5m')
end

-- Recomputes the candles of stock s over the 1m bucket fields `minutes` (a set) from the
-- index i, which must be complete; then their 5m and 1h candles. Cost: 60 index fields
-- per 1m bucket, 5 and 12 candles per 5m and 1h bucket.
local function recompute_candles(s, minutes)
  local cs = {}
  for f in pairs(minutes) do
    local prefix = string.sub(f, 4, 7)
    local fields = {}
    for sec = 0, 59 do fields[sec + 1] = prefix .. string.format('%02d', sec) end
    local toks = redis.call('HMGET', hk(s, 'i'), unpack(fields))
    local k = nil
    for i = 1, 60 do
      local tok = toks[i]
      if tok and tok ~= '""' and tonumber(tok) then k = extend(k, tok) end
    end
    cs[f] = k or false
  end
  rollup(s, cs, minutes)
  store_candles(s, cs)
end

-- time -> price token of parallel lists of time and price tokens (JSON-quoted times when
-- quoted is true); a repeated time keeps its last price, as the index does.
local function index_of(times, toks, quoted)
  local out = {}
  for i = 1, #times do
    local t = times[i]
    if quoted then t = string.match(t, '^"(.*)"$') or t end
    out[t] = toks[i]
  end
  return out
end

-- Rebuilds every candle of stock s from its whole history (time -> price token).
local function rebuild_candles(s, index)
  redis.call('DEL', hk(s, 'c'))
  local minutes = {}
  local cs = {}
  local sorted = {}
  for t, tok in pairs(index) do
    if buckets(t) and tok ~= '""' and tonumber(tok) then sorted[#sorted + 1] = t end
  end
  table.sort(sorted)
  for _, t in ipairs(sorted) do
    local m1 = buckets(t)
    minutes[m1] = true
    cs[m1] = extend(cs[m1] or nil, index[t])
  end
  rollup(s, cs, minutes)
  store_candles(s, cs)
end

-- Makes sure stock s has a history. A contract JSON already stored under s (from a
-- fixture or an older tool) is adopted with all its fields; a value that is not one is
-- quarantined (quarantine() comes from the platform, prepended), never overwritten.
-- Returns 1 when it quarantined.
local function ensure(s)
  if redis.call('SISMEMBER', 'bourse:stocks', s) == 1 then return 0 end
  local quarantined = 0
  local fields = {}
  local tparts, pparts = {}, {}
  local mt = ''
  local raw = redis.call('GET', s)
  if raw then
    local ok, doc = pcall(cjson.decode, raw)
    local valid = ok and type(doc) == 'table'
      and (doc.time == nil or type(doc.time) == 'table')
      and (doc.price == nil or type(doc.price) == 'table')
    if valid then
      local times, prices = doc.time or {}, doc.price or {}
      for i = 1, #times do
        local p = prices[i]
        if p == nil or p == cjson.null then p = '' end
        local tok = cjson.encode(p)
        tparts[i] = cjson.encode(times[i])
        pparts[i] = tok
        redis.call('HSET', hk(s, 'i'), tostring(times[i]), tok)
        local t = tostring(times[i])
        if string.match(t, '^%d%d%d%d%d%d$') and t > mt then mt = t end
      end
      doc.time, doc.price = nil, nil
      fields = doc
    else
      quarantine(s)
      quarantined = 1
    end
  end
  if fields.performance == nil then fields.performance = 0 end
  local v = 0
  if #tparts > 0 then v = 1 end
  redis.call('SET', hk(s, 'f'), cjson.encode(fields))
  redis.call('SET', hk(s, 't'), table.concat(tparts, ','))
  redis.call('SET', hk(s, 'p'), table.concat(pparts, ','))
  -- Adopted times are indexed at once: they need not be hhmmss, so the latest time says
  -- nothing about them.
  redis.call('HSET', hk(s, 'm'), 'v', v, 'pv', 0, 'mt', mt, 'ix', v, 'n', #tparts, 'g', next_gen())
  rebuild_candles(s, index_of(tparts, pparts, true))
  redis.call('SADD', 'bourse:stocks', s)
  return quarantined
end

-- Removes every piece of stock s (not the key s itself).
local function forget(s)
  redis.call('DEL', hk(s, 't'), hk(s, 'p'), hk(s, 'i'), hk(s, 'f'), hk(s, 'm'), hk(s, 'c'))
  redis.call('SREM', 'bourse:stocks', s)
  redis.call('SREM', 'bourse:dirty', s)
end

