-- A recovery holds a lost epoch key for itself, for a lease.
-- KEYS[1]: the epoch key. ARGV[1]: the recovery's name ('recovering:...'); ARGV[2]: the
-- lease (ms).
-- Returns 1 when the key is (now) this recovery's, 0 when an epoch is open, -1 when another
-- recovery holds it. A value that is neither an epoch nor a recovery's is taken over.
local current = redis.call('GET', KEYS[1])
if current == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end
if current and tonumber(current) then return 0 end
if current and string.sub(current, 1, 11) == 'recovering:' then return -1 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
