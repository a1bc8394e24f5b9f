-- A summary of every stock with a history, sorted by name, and the market generation it
-- was read at. Each stock costs a few calls whatever its history's length: its latest
-- and first prices are read from the ends of its price text.
-- Returns { gen, then per stock: stock, n, fields, latest price, its time, first price }
-- with '' for a price (or time) the stock has none of.
local function priced(tok) return tok ~= '""' and tonumber(tok) ~= nil end

-- The last token of the text under key matching priced, and its place from the end (1 =
-- last); nil when none does.
local function last_priced(key)
  local len = redis.call('STRLEN', key)
  local window = 64
  while true do
    local start = len - window
    if start < 0 then start = 0 end
    local toks = split_tokens(redis.call('GETRANGE', key, start, len - 1))
    local first = 1
    if start > 0 then first = 2 end
    for i = #toks, first, -1 do
      if priced(toks[i]) then return toks[i], #toks - i + 1 end
    end
    if start == 0 then return nil end
    window = window * 4
  end
end

-- The k-th token from the end of the text under key.
local function from_end(key, k)
  local len = redis.call('STRLEN', key)
  local window = 16 * k
  while true do
    local start = len - window
    if start < 0 then start = 0 end
    local toks = split_tokens(redis.call('GETRANGE', key, start, len - 1))
    local whole = #toks
    if start > 0 then whole = whole - 1 end
    if whole >= k or start == 0 then return toks[#toks - k + 1] end
    window = window * 4
  end
end

-- The first token of the text under key matching priced, or nil.
local function first_priced(key)
  local len = redis.call('STRLEN', key)
  local window = 64
  while true do
    local stop = math.min(window, len)
    local toks = split_tokens(redis.call('GETRANGE', key, 0, stop - 1))
    local last = #toks
    if stop < len then last = last - 1 end
    for i = 1, last do
      if priced(toks[i]) then return toks[i] end
    end
    if stop >= len then return nil end
    window = window * 4
  end
end

local stocks = redis.call('SMEMBERS', 'bourse:stocks')
table.sort(stocks)
local out = { redis.call('GET', 'bourse:market:gen') or '0' }
for _, s in ipairs(stocks) do
  local n = tonumber(redis.call('HGET', hk(s, 'm'), 'n') or '')
  if not n then n = #split_tokens(redis.call('GET', hk(s, 'p')) or '') end
  local latest, k = last_priced(hk(s, 'p'))
  local at, first = '', ''
  if latest then
    at = from_end(hk(s, 't'), k) or ''
    first = first_priced(hk(s, 'p')) or ''
  end
  out[#out + 1] = s
  out[#out + 1] = n
  out[#out + 1] = redis.call('GET', hk(s, 'f')) or '{}'
  out[#out + 1] = latest or ''
  out[#out + 1] = at
  out[#out + 1] = first
end
return out
