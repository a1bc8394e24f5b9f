-- Replaces stock ARGV[1] by the contract JSON ARGV[2] (a fixture entry): its history
-- becomes exactly the fixture's entries; later ticks are appended after them.
local s = ARGV[1]
forget(s)
redis.call('SET', s, ARGV[2])
ensure(s)
materialize(s, now_ms())
return 1
