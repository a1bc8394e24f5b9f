-- Applies a batch of ticks to the stock histories, atomically with the consumed offsets.
--
-- Exactly once: ARGV[1] names the hash of the last applied offset per partition of the
-- consumer group (empty for sources without offsets, such as a CSV file). Nothing is
-- written, and the caller corrects and calls again, when for some partition:
-- - the batch starts at or below the stored offset (a replay after a crash or a
--   rebalance): answer { -1, partition, stored }; the caller drops what was applied;
-- - the stored offset is behind the last offset the caller already submitted before this
--   batch (its previous batch, still in flight, failed): answer { -2, partition, stored };
--   the caller waits for the previous batch and calls again. This lets a caller pipeline
--   batches without a failed one ever being overtaken.
-- Otherwise the ticks and the new offsets are written by this one script: Redis holds all
-- of a batch or none of it.
--
-- Cost: a stock whose ticks in the batch are all later than its latest time (the usual
-- case) costs a few calls whatever the batch or history size: the caller sends the
-- ready-made text to APPEND and the index pairs to HSET. Other stocks (out-of-order
-- times, corrections) are applied tick by tick.
--
-- ARGV[1] offsets key or ''; ARGV[2] materialize interval (ms); ARGV[3] partition count P;
-- then P quadruples: partition, first offset, last offset, last offset submitted before
-- (or ''); then per stock:
--   stock, n, increasing (1 when the n times strictly increase), min time, time text,
--   price text, then n pairs: time, price token
-- Returns { appended, price updates, unchanged duplicates, quarantined }, or { -1 | -2, partition, stored }
local offkey = ARGV[1]
local interval = tonumber(ARGV[2])
local parts = tonumber(ARGV[3])
local j = 4
if offkey ~= '' then
  for _ = 1, parts do
    local stored = redis.call('HGET', offkey, ARGV[j])
    local s = tonumber(stored or '-1')
    if s >= tonumber(ARGV[j + 1]) then return { -1, tonumber(ARGV[j]), stored } end
    if ARGV[j + 3] ~= '' and s < tonumber(ARGV[j + 3]) then return { -2, tonumber(ARGV[j]), stored or '-1' } end
    j = j + 4
  end
else
  j = j + 4 * parts
end
local offsets_at = 4

local now = now_ms()
local appended, updated, unchanged, quarantined = 0, 0, 0, 0

while j <= #ARGV do
  local s, n, increasing, min_time = ARGV[j], tonumber(ARGV[j + 1]), ARGV[j + 2], ARGV[j + 3]
  local ttext, ptext = ARGV[j + 4], ARGV[j + 5]
  local first = j + 6
  local last = first + 2 * n - 1
  j = last + 1
  quarantined = quarantined + ensure(s)
  local m = redis.call('HMGET', hk(s, 'm'), 'mt', 'at')
  local mt, at = m[1] or '', tonumber(m[2] or '0')
  local count = redis.call('HLEN', hk(s, 'i'))
  local changed = 0
  local lead = ''
  if count > 0 then lead = ',' end
  if increasing == '1' and min_time > mt then
    -- Every time is new: append the ready-made text, index the pairs.
    redis.call('APPEND', hk(s, 't'), lead .. ttext)
    redis.call('APPEND', hk(s, 'p'), lead .. ptext)
    for i = first, last, 4000 do
      redis.call('HSET', hk(s, 'i'), unpack(ARGV, i, math.min(i + 3999, last)))
    end
    changed = n
    appended = appended + n
    mt = ARGV[last - 1]
  else
    local newt, newp, fixes, index = {}, {}, {}, {}
    local local_pos = {}
    for i = first, last, 2 do
      local t, tok = ARGV[i], ARGV[i + 1]
      local current = index[t]
      if current == nil then current = redis.call('HGET', hk(s, 'i'), t) or false end
      if current == false then
        newt[#newt + 1] = '"' .. t .. '"'
        newp[#newp + 1] = tok
        local_pos[t] = #newp
        if t > mt then mt = t end
        appended = appended + 1
        changed = changed + 1
        index[t] = tok
      elseif current ~= tok then
        if local_pos[t] then newp[local_pos[t]] = tok else fixes[t] = tok end
        updated = updated + 1
        changed = changed + 1
        index[t] = tok
      else
        unchanged = unchanged + 1
      end
    end
    if next(fixes) ~= nil then
      -- Corrections of stored times: rare, so the price text is rebuilt once.
      local times, prices = {}, {}
      for token in string.gmatch(redis.call('GET', hk(s, 't')) or '', '[^,]+') do times[#times + 1] = token end
      for token in string.gmatch(redis.call('GET', hk(s, 'p')) or '', '[^,]+') do prices[#prices + 1] = token end
      for i = 1, #times do
        local fix = fixes[string.sub(times[i], 2, -2)]
        if fix then prices[i] = fix end
      end
      redis.call('SET', hk(s, 'p'), table.concat(prices, ','))
    end
    if #newt > 0 then
      redis.call('APPEND', hk(s, 't'), lead .. table.concat(newt, ','))
      redis.call('APPEND', hk(s, 'p'), lead .. table.concat(newp, ','))
    end
    local flat = {}
    for t, tok in pairs(index) do
      flat[#flat + 1] = t
      flat[#flat + 1] = tok
    end
    if #flat > 0 then hset_many(hk(s, 'i'), flat) end
  end
  if changed > 0 then
    redis.call('HINCRBY', hk(s, 'm'), 'v', changed)
    redis.call('HSET', hk(s, 'm'), 'mt', mt)
    if now - at >= interval then
      materialize(s, now)
    else
      redis.call('SADD', 'bourse:dirty', s)
    end
  end
end

if offkey ~= '' and parts > 0 then
  local flat = {}
  for k = 0, parts - 1 do
    flat[#flat + 1] = ARGV[offsets_at + 4 * k]
    flat[#flat + 1] = ARGV[offsets_at + 4 * k + 2]
  end
  redis.call('HSET', offkey, unpack(flat))
end

return { appended, updated, unchanged, quarantined }
