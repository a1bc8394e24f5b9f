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
--                         interval and hour: `1m:09`, `5m:09`, `1h:09` -> that hour's
--                         candles in time order, `MMSS=open,high,low,close,count;...`
--                         (MMSS the bucket start in the hour, prices as tokens of p)
--   S             string  the contract JSON, rebuilt from the pieces (materialized)
--   bourse:stocks set     every stock with a history; bourse:dirty set: not yet rebuilt
--   bourse:market:gen     string  a counter raised by every write that changes what the
--                         market read API shows (ticks, performance, a seed), kept at
--                         or above the clock in µs (see next_gen); a stock's
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

-- Raises the market generation (see the top); once per script run. The new value is the
-- clock in microseconds, or the old one plus one if that is higher: a Redis that comes
-- back emptied, or from a save older than its last writes, goes on above every value it
-- gave before, so a generation never repeats and a view tagged with an old one is never
-- current again. (Exact as a Lua number: about 1.8e15, below 2^53.)
local gen_now = nil
local function next_gen()
  if not gen_now then
    local t = redis.call('TIME')
    local clock = tonumber(t[1]) * 1000000 + tonumber(t[2])
    local current = tonumber(redis.call('GET', 'bourse:market:gen') or '0')
    gen_now = math.max(clock, current + 1)
    redis.call('SET', 'bourse:market:gen', string.format('%.0f', gen_now))
  end
  return gen_now
end

-- Whether t is an hhmmss time (the only times candles are made of).
local function is_hhmmss(t) return string.match(t, '^%d%d%d%d%d%d$') ~= nil end

-- A candle { o, h, l, c, n } (price tokens and a count) from its text, or nil.
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

-- Candle a followed by the later candle b (either may be nil).
local function merge(a, b)
  if not a then return b end
  if not b then return a end
  local out = { a[1], a[2], a[3], b[4], a[5] + b[5] }
  if tonumber(b[2]) > tonumber(out[2]) then out[2] = b[2] end
  if tonumber(b[3]) < tonumber(out[3]) then out[3] = b[3] end
  return out
end

-- The entries of an hour's candle text (`MMSS=o,h,l,c,n;...`): key -> candle.
local function parse_hour(text)
  local out = {}
  if not text then return out end
  for key, body in string.gmatch(text, '(%d%d%d%d)=([^;]*)') do out[key] = candle_of(body) end
  return out
end

-- The text of an hour's candles (key -> candle), in time order; '' for none.
local function hour_text(map)
  local keys = {}
  for key in pairs(map) do keys[#keys + 1] = key end
  table.sort(keys)
  local parts = {}
  for i, key in ipairs(keys) do parts[i] = key .. '=' .. candle_text(map[key]) end
  return table.concat(parts, ';')
end

-- Writes hour hh of stock s from its complete 1m candles (key `MM00` -> candle): its 1m,
-- 5m and 1h candle texts, the 5m and 1h ones merged from the 1m ones in time order.
local function store_hour(s, hh, ones)
  local keys = {}
  for key in pairs(ones) do keys[#keys + 1] = key end
  table.sort(keys)
  local fives, hour = {}, nil
  for _, key in ipairs(keys) do
    local mm = tonumber(string.sub(key, 1, 2))
    local five = string.format('%02d00', mm - mm % 5)
    fives[five] = merge(fives[five], ones[key])
    hour = merge(hour, ones[key])
  end
  local set, del = {}, {}
  local hours = {}
  if hour then hours['0000'] = hour end
  for interval, map in pairs({ ['1m'] = ones, ['5m'] = fives, ['1h'] = hours }) do
    local text = hour_text(map)
    if text == '' then del[#del + 1] = interval .. ':' .. hh
    else
      set[#set + 1] = interval .. ':' .. hh
      set[#set + 1] = text
    end
  end
  if #set > 0 then redis.call('HSET', hk(s, 'c'), unpack(set)) end
  if #del > 0 then redis.call('HDEL', hk(s, 'c'), unpack(del)) end
end

-- Recomputes the candles of stock s over the 1m buckets `minutes` (a set of `HHMM`) from
-- the index i, which must be complete, then the 5m and 1h candles of their hours. Cost:
-- 60 index fields per 1m bucket, and the hour's 60 1m candles at most.
local function recompute_candles(s, minutes)
  local by_hour = {}
  for m in pairs(minutes) do
    local hh = string.sub(m, 1, 2)
    by_hour[hh] = by_hour[hh] or {}
    by_hour[hh][#by_hour[hh] + 1] = string.sub(m, 3, 4)
  end
  for hh, mms in pairs(by_hour) do
    local ones = parse_hour(redis.call('HGET', hk(s, 'c'), '1m:' .. hh))
    for _, mm in ipairs(mms) do
      local fields = {}
      for sec = 0, 59 do fields[sec + 1] = hh .. mm .. string.format('%02d', sec) end
      local toks = redis.call('HMGET', hk(s, 'i'), unpack(fields))
      local k = nil
      for i = 1, 60 do
        local tok = toks[i]
        if tok and tok ~= '""' and tonumber(tok) then k = extend(k, tok) end
      end
      ones[mm .. '00'] = k
    end
    store_hour(s, hh, ones)
  end
end

-- Appends a batch's candles to stock s: pairs of field (`1m:09`) and text of candles all
-- later than any stored; the first may be of the same bucket as the stored text's last,
-- and is merged with it. One HMGET and one HSET.
local function append_candles(s, pairs_list)
  local fields = {}
  for i = 1, #pairs_list, 2 do fields[#fields + 1] = pairs_list[i] end
  local stored = redis.call('HMGET', hk(s, 'c'), unpack(fields))
  local set = {}
  for i = 1, #fields do
    local text = pairs_list[2 * i]
    local before = stored[i]
    if before and before ~= '' then
      -- Plain finds only (a pattern over the text would backtrack through it): the last
      -- stored entry starts after the last ';', the batch's first ends at its first ';'.
      local back = string.find(string.reverse(before), ';', 1, true)
      local head, last = '', before
      if back then
        head = string.sub(before, 1, #before - back)
        last = string.sub(before, #before - back + 2)
      end
      local cut = string.find(text, ';', 1, true)
      local first, rest = text, ''
      if cut then
        first = string.sub(text, 1, cut - 1)
        rest = string.sub(text, cut)
      end
      if string.sub(last, 1, 4) == string.sub(first, 1, 4) then
        local merged = string.sub(last, 1, 5) .. candle_text(merge(candle_of(string.sub(last, 6)), candle_of(string.sub(first, 6)))) .. rest
        if head ~= '' then text = head .. ';' .. merged else text = merged end
      else
        text = before .. ';' .. text
      end
    end
    set[#set + 1] = fields[i]
    set[#set + 1] = text
  end
  hset_many(hk(s, 'c'), set)
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
  local sorted = {}
  for t, tok in pairs(index) do
    if is_hhmmss(t) and tok ~= '""' and tonumber(tok) then sorted[#sorted + 1] = t end
  end
  table.sort(sorted)
  local by_hour = {}
  for _, t in ipairs(sorted) do
    local hh, key = string.sub(t, 1, 2), string.sub(t, 3, 4) .. '00'
    by_hour[hh] = by_hour[hh] or {}
    by_hour[hh][key] = extend(by_hour[hh][key], index[t])
  end
  for hh, ones in pairs(by_hour) do store_hour(s, hh, ones) end
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

