/**
 * Setting aside another program's Redis value instead of overwriting it, written once for
 * every script that writes keys whose names come from outside (stock names, user ids).
 */

/**
 * A Lua function to prepend to a script: `quarantine(key)` renames `key` to
 * `bourse:quarantine:<key>`, or `bourse:quarantine:<key>:2`, `:3`, ... when that is taken,
 * so a value set aside earlier is never overwritten; it returns the new name.
 */
export const QUARANTINE_LUA = `
local function quarantine(key)
  local target = 'bourse:quarantine:' .. key
  local n = 1
  while redis.call('EXISTS', target) == 1 do
    n = n + 1
    target = 'bourse:quarantine:' .. key .. ':' .. n
  end
  redis.call('RENAME', key, target)
  return target
end
`
