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
-- - ARGV[4] is '1' (the caller applied batches before, or found offsets at its start) and
--   the hash does not exist: Redis lost the group's record (flushed, or restarted without
--   its data): answer { -3 }; the caller stops, since applying would write a partial state.
-- Otherwise the ticks and the new offsets are written by this one script: Redis holds all
-- of a batch or none of it.
--
-- All or nothing also needs every key the script writes to be of the type it writes: Redis
-- does not roll a script back, so a WRONGTYPE halfway would leave the batch's earlier stocks
-- written. Every key is checked before the first write. A stock key holding another type
-- (a list, a hash: not ours) is moved to bourse:quarantine:S, as a non-contract string is;
-- one of Bourse's own keys (bourse:h:S:*, bourse:stocks, bourse:dirty, the offsets hash)
-- holding the wrong type is an error reply starting `BOURSE-KEYTYPE`, and nothing is written.
--
-- Cost: a stock whose ticks in the batch are all later than its latest time (the usual
-- case) costs a few calls whatever the batch or history size: the caller sends the
-- ready-made text to APPEND, and no per-tick index is kept until a stock first gets a
-- tick that is not later than its latest time. Such ticks (out-of-order times,
-- corrections) are applied one by one against the index.
--
-- Candles, the market generation and the tick stream (see history.lua) are written in the
-- same step, so they too hold every applied tick exactly once: a replayed batch writes
-- nothing at all. Their cost per stock and batch is a few calls: one HMGET and one HSET
-- of the candles a batch of later times touches, one XADD of the changed times.
--
-- ARGV[1] offsets key or ''; ARGV[2] materialize interval (ms); ARGV[3] partition count P;
-- ARGV[4] '1' when the offsets hash must exist, else ''; ARGV[5] the tick stream's
-- approximate length cap (XADD MAXLEN ~); then P quadruples: partition,
-- first offset, last offset, last offset submitted before (or ''); then per stock:
--   stock, n, increasing (1 when the n times strictly increase), min time, max time,
--   time text (`"090000","090001"`), price text (`1,""`), the number k of candle fields
--   then k field/value pairs: when increasing, the batch's own candles per interval and
--   hour (`1m:09`, `MMSS=open,high,low,close,count;...`, see candles.ts)
-- Returns { appended, price updates, unchanged duplicates, quarantined },
-- { -1 | -2, partition, stored } or { -3 }
local offkey = ARGV[1]
local interval = tonumber(ARGV[2])
local parts = tonumber(ARGV[3])
local stream_cap = ARGV[5]
local j = 6

local function type_of(key) return redis.call('TYPE', key)['ok'] end
local function require_type(key, wanted)
  local t = type_of(key)
  if t ~= 'none' and t ~= wanted then
    error({ err = 'BOURSE-KEYTYPE ' .. key .. ' holds a ' .. t .. ', not a ' .. wanted }, 0)
  end
end

-- The offsets hash is read first, so its type is checked first (a WRONGTYPE reply would
-- be taken for a passing failure and retried). A previous batch still in flight (-2) is
-- told before a missing record (-3): a new group's first batches may reach Redis out of
-- order, before any record exists, and that is no loss.
if offkey ~= '' then require_type(offkey, 'hash') end
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
if offkey ~= '' and ARGV[4] == '1' and redis.call('EXISTS', offkey) == 0 then return { -3 } end
local offsets_at = 6

-- Every key checked before the first write (see the top).
local foreign = {}
require_type('bourse:stocks', 'set')
require_type('bourse:dirty', 'set')
require_type('bourse:market:gen', 'string')
require_type('bourse:ticks', 'stream')
local k = j
while k <= #ARGV do
  local s = ARGV[k]
  local t = type_of(s)
  if t ~= 'none' and t ~= 'string' then foreign[s] = true end
  for _, part in ipairs({ 't', 'p', 'f' }) do require_type(hk(s, part), 'string') end
  for _, part in ipairs({ 'i', 'm', 'c' }) do require_type(hk(s, part), 'hash') end
  k = k + 8 + 2 * tonumber(ARGV[k + 7])
end

local now = now_ms()
local appended, updated, unchanged, quarantined = 0, 0, 0, 0

-- Indexes every time of stock s (once, when it first gets a tick that is not later than
-- its latest time) and keeps the index from then on.
local function build_index(s)
  local times = split_times(redis.call('GET', hk(s, 't')) or '')
  local toks = split_tokens(redis.call('GET', hk(s, 'p')) or '')
  local flat = {}
  for i = 1, #times do
    flat[#flat + 1] = times[i]
    flat[#flat + 1] = toks[i]
  end
  if #flat > 0 then hset_many(hk(s, 'i'), flat) end
  redis.call('HSET', hk(s, 'm'), 'ix', 1)
end

while j <= #ARGV do
  local s, n, increasing = ARGV[j], tonumber(ARGV[j + 1]), ARGV[j + 2]
  local min_time, max_time, ttext, ptext = ARGV[j + 3], ARGV[j + 4], ARGV[j + 5], ARGV[j + 6]
  local candles_at, candles_n = j + 8, tonumber(ARGV[j + 7])
  j = j + 8 + 2 * candles_n
  if foreign[s] then
    quarantine(s)
    quarantined = quarantined + 1
  end
  quarantined = quarantined + ensure(s)
  local m = redis.call('HMGET', hk(s, 'm'), 'mt', 'at', 'ix', 'v', 'n')
  local mt, at, indexed = m[1] or '', tonumber(m[2] or '0'), m[3] == '1'
  local version, count = tonumber(m[4] or '0'), tonumber(m[5] or '')
  local changed, added = 0, 0
  local event_t, event_p = ttext, ptext
  local lead = ''
  if redis.call('STRLEN', hk(s, 't')) > 0 then lead = ',' end
  if increasing == '1' and min_time > mt then
    -- Every time is new: append the ready-made text (and index it, if the stock is indexed).
    redis.call('APPEND', hk(s, 't'), lead .. ttext)
    redis.call('APPEND', hk(s, 'p'), lead .. ptext)
    if indexed then
      local times, toks, flat = split_times(ttext), split_tokens(ptext), {}
      for i = 1, #times do
        flat[#flat + 1] = times[i]
        flat[#flat + 1] = toks[i]
      end
      hset_many(hk(s, 'i'), flat)
    end
    -- Each new time is the latest of its bucket: the batch's own candles (made by the
    -- caller) follow the stored ones, one HMGET and one HSET whatever the batch's size.
    -- The batch's own candles (made by the caller) follow the stored ones.
    if candles_n > 0 then append_candles(s, { unpack(ARGV, candles_at, candles_at + 2 * candles_n - 1) }) end
    changed = n
    added = n
    appended = appended + n
    mt = max_time
  else
    if not indexed then build_index(s) end
    local times, toks = split_times(ttext), split_tokens(ptext)
    local newt, newp, fixes, index = {}, {}, {}, {}
    local local_pos = {}
    local evt, evp, minutes = {}, {}, {}
    for i = 1, #times do
      local t, tok = times[i], toks[i]
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
        added = added + 1
        evt[#evt + 1] = '"' .. t .. '"'
        evp[#evp + 1] = tok
        if is_hhmmss(t) then minutes[string.sub(t, 1, 4)] = true end
      elseif current ~= tok then
        if local_pos[t] then newp[local_pos[t]] = tok else fixes[t] = tok end
        updated = updated + 1
        changed = changed + 1
        index[t] = tok
        evt[#evt + 1] = '"' .. t .. '"'
        evp[#evp + 1] = tok
        if is_hhmmss(t) then minutes[string.sub(t, 1, 4)] = true end
      else
        unchanged = unchanged + 1
      end
    end
    if next(fixes) ~= nil then
      -- Corrections of stored times: rare, so the price text is rebuilt once.
      local stored_times = split_times(redis.call('GET', hk(s, 't')) or '')
      local prices = split_tokens(redis.call('GET', hk(s, 'p')) or '')
      for i = 1, #stored_times do
        local fix = fixes[stored_times[i]]
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
    -- Any bucket a time was added to or changed in is recomputed from the index: exact
    -- whatever the order of arrival, and an emptied price leaves its candle.
    if next(minutes) ~= nil then recompute_candles(s, minutes) end
    event_t, event_p = table.concat(evt, ','), table.concat(evp, ',')
  end
  if changed > 0 then
    -- A history written before the entry count and the candles were kept gets both once,
    -- from its whole texts (which already hold this batch).
    if not count then
      local toks = split_tokens(redis.call('GET', hk(s, 'p')) or '')
      count = #toks - added
      rebuild_candles(s, index_of(split_times(redis.call('GET', hk(s, 't')) or ''), toks, false))
    end
    redis.call('HSET', hk(s, 'm'), 'v', version + changed, 'n', count + added, 'mt', mt, 'g', next_gen())
    redis.call('XADD', 'bourse:ticks', 'MAXLEN', '~', stream_cap, '*', 's', s,
      'd', '{"stock":"' .. s .. '","time":[' .. event_t .. '],"price":[' .. event_p .. ']}')
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
