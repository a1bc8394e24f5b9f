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
--   S             string  the contract JSON, rebuilt from the pieces (materialized)
--   bourse:stocks set     every stock with a history; bourse:dirty set: not yet rebuilt

local function hk(s, part) return 'bourse:h:' .. s .. ':' .. part end

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
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
  redis.call('HSET', hk(s, 'm'), 'v', v, 'pv', 0, 'mt', mt, 'ix', v)
  redis.call('SADD', 'bourse:stocks', s)
  return quarantined
end

-- Removes every piece of stock s (not the key s itself).
local function forget(s)
  redis.call('DEL', hk(s, 't'), hk(s, 'p'), hk(s, 'i'), hk(s, 'f'), hk(s, 'm'))
  redis.call('SREM', 'bourse:stocks', s)
  redis.call('SREM', 'bourse:dirty', s)
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
