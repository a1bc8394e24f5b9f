-- A page of stock ARGV[1]'s history, newest first: the entries before position ARGV[2]
-- (0-based from the oldest; '' for the newest page), at most ARGV[3] of them. Reads the
-- time and price texts from their end, a growing window at a time, so a page costs what
-- lies between it and the newest entry, not the whole history.
-- Returns {} for an unknown stock, else { n, g, fields, from, times..., prices... }:
-- n entries in all, g the stock's generation, fields the JSON of its other fields, from
-- the position of the page's oldest entry, then the page's times and prices oldest first.
local s, before, limit = ARGV[1], ARGV[2], tonumber(ARGV[3])
if redis.call('SISMEMBER', 'bourse:stocks', s) == 0 then return {} end
local m = redis.call('HMGET', hk(s, 'm'), 'n', 'g')
local n = tonumber(m[1] or '')
if not n then n = #split_tokens(redis.call('GET', hk(s, 'p')) or '') end
local upto = n
if before ~= '' then upto = math.min(tonumber(before), n) end
local from = math.max(upto - limit, 0)

-- Tokens at positions from .. upto-1 (0-based) of the comma-separated text under key,
-- which holds n tokens.
local function slice(key)
  local out = {}
  if upto <= from then return out end
  local len = redis.call('STRLEN', key)
  local need = n - from
  local window = 64 * need
  while true do
    local start = len - window
    if start < 0 then start = 0 end
    local toks = split_tokens(redis.call('GETRANGE', key, start, len - 1))
    local whole = #toks
    if start > 0 then whole = whole - 1 end
    if whole >= need or start == 0 then
      -- toks[#toks] is position n-1.
      for p = from, upto - 1 do out[#out + 1] = toks[#toks - (n - 1 - p)] end
      return out
    end
    window = window * 4
  end
end

local out = { n, m[2] or '0', redis.call('GET', hk(s, 'f')) or '{}', from }
for _, t in ipairs(slice(hk(s, 't'))) do out[#out + 1] = t end
for _, p in ipairs(slice(hk(s, 'p'))) do out[#out + 1] = p end
return out
