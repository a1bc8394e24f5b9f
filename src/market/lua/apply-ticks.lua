-- Applies a batch of ticks to the stock histories, atomically with the consumed offsets.
--
-- Exactly once: ARGV[1] names the hash of the last applied offset per partition of the
-- consumer group (or is empty for sources without offsets, such as a CSV file). A tick
-- whose offset is at or below the stored one was applied before (a replay after a crash
-- or a rebalance) and is skipped. The ticks and the new offsets are written by this one
-- script, so Redis holds either all of a batch or none of it.
--
-- ARGV[2]: materialize interval in ms (0: rebuild the contract JSON after every batch)
-- ARGV[3..]: groups of five: partition, offset, stock, time, price token; an empty stock
-- only records its offset (a message that went to the dead-letter topic)
-- Returns { appended, price updates, unchanged duplicates, replayed (skipped by offset), quarantined }
local offkey = ARGV[1]
local interval = tonumber(ARGV[2])
local now = now_ms()
local last = {}
local newest = {}
local per = {}
local touched = {}
local appended, updated, unchanged, replayed, quarantined = 0, 0, 0, 0, 0

for j = 3, #ARGV, 5 do
  local skip = false
  if offkey ~= '' then
    local part = ARGV[j]
    local l = last[part]
    if l == nil then
      l = tonumber(redis.call('HGET', offkey, part) or '-1')
      last[part] = l
    end
    local o = tonumber(ARGV[j + 1])
    if o <= l then
      skip = true
      replayed = replayed + 1
    else
      last[part] = o
      newest[part] = ARGV[j + 1]
    end
  end
  if not skip and ARGV[j + 2] ~= '' then
    local s, t, tok = ARGV[j + 2], ARGV[j + 3], ARGV[j + 4]
    local st = per[s]
    if st == nil then
      quarantined = quarantined + ensure(s)
      st = { n = redis.call('HLEN', hk(s, 'i')), t = {}, p = {}, known = {}, idx = {}, fix = {}, changed = 0 }
      per[s] = st
      touched[#touched + 1] = s
    end
    local k = st.known[t]
    if k == nil then
      local entry = redis.call('HGET', hk(s, 'i'), t)
      if entry then
        local sp = string.find(entry, ' ', 1, true)
        k = { pos = tonumber(string.sub(entry, 1, sp - 1)), tok = string.sub(entry, sp + 1), stored = true }
        st.known[t] = k
      end
    end
    if k == nil then
      local i = #st.t + 1
      st.t[i] = '"' .. t .. '"'
      st.p[i] = tok
      st.known[t] = { pos = st.n + i - 1, tok = tok, stored = false, local_i = i, w = true }
      st.changed = st.changed + 1
      appended = appended + 1
    elseif k.tok ~= tok then
      k.tok = tok
      k.w = true
      if k.stored then st.fix[k.pos] = tok else st.p[k.local_i] = tok end
      st.changed = st.changed + 1
      updated = updated + 1
    else
      unchanged = unchanged + 1
    end
  end
end

for _, s in ipairs(touched) do
  local st = per[s]
  if next(st.fix) ~= nil then
    -- A price correction of a stored time: rare, so the price list is rebuilt once.
    local parts = {}
    local p = redis.call('GET', hk(s, 'p')) or ''
    for token in string.gmatch(p, '[^,]+') do parts[#parts + 1] = token end
    for pos, tok in pairs(st.fix) do parts[pos + 1] = tok end
    redis.call('SET', hk(s, 'p'), table.concat(parts, ','))
  end
  if #st.t > 0 then
    local lead = ''
    if st.n > 0 then lead = ',' end
    redis.call('APPEND', hk(s, 't'), lead .. table.concat(st.t, ','))
    redis.call('APPEND', hk(s, 'p'), lead .. table.concat(st.p, ','))
  end
  if st.changed > 0 then
    local flat = {}
    for t, k in pairs(st.known) do
      if k.w then
        flat[#flat + 1] = t
        flat[#flat + 1] = k.pos .. ' ' .. k.tok
      end
    end
    hset_many(hk(s, 'i'), flat)
    redis.call('HINCRBY', hk(s, 'm'), 'v', st.changed)
    local at = tonumber(redis.call('HGET', hk(s, 'm'), 'at') or '0')
    if now - at >= interval then
      materialize(s, now)
    else
      redis.call('SADD', 'bourse:dirty', s)
    end
  end
end

if offkey ~= '' then
  local flat = {}
  for part, o in pairs(newest) do
    flat[#flat + 1] = part
    flat[#flat + 1] = o
  end
  if #flat > 0 then redis.call('HSET', offkey, unpack(flat)) end
end

return { appended, updated, unchanged, replayed, quarantined }
