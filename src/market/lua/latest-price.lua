-- The latest non-empty price of each stock of ARGV: the last entry of its `price` list
-- that is not "". Reads the price text from its end, a growing window at a time, so the
-- cost does not grow with the history. A stock stored only as a contract JSON (written by
-- another tool) is read from that JSON.
-- Returns two entries per stock, in order: 0 for an unknown stock (then ''), otherwise 1
-- and its price ('' for a stock without a price).
local function latest(s)
  if redis.call('SISMEMBER', 'bourse:stocks', s) == 1 then
    local key = hk(s, 'p')
    local len = redis.call('STRLEN', key)
    local window = 64
    while true do
      local start = len - window
      if start < 0 then start = 0 end
      local toks = split_tokens(redis.call('GETRANGE', key, start, len - 1))
      -- Unless the window starts the text, its first token may be cut: the next window has it.
      local first = 1
      if start > 0 then first = 2 end
      for i = #toks, first, -1 do
        if toks[i] ~= '""' then return 1, toks[i] end
      end
      if start == 0 then return 1, '' end
      window = window * 4
    end
  end
  local raw = redis.call('GET', s)
  if not raw then return 0, '' end
  local ok, doc = pcall(cjson.decode, raw)
  if not ok or type(doc) ~= 'table' or type(doc.price) ~= 'table' then return 1, '' end
  for i = #doc.price, 1, -1 do
    local p = doc.price[i]
    if type(p) == 'number' then return 1, tostring(p) end
    if type(p) == 'string' and p ~= '' and tonumber(p) then return 1, p end
  end
  return 1, ''
end

local out = {}
for i = 1, #ARGV do
  local known, price = latest(ARGV[i])
  out[2 * i - 1] = known
  out[2 * i] = price
end
return out
