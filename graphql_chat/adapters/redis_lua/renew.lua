-- Renew a recovery's hold, or end it by publishing the epoch it opened.
-- KEYS[1]: the held key. ARGV[1]: the recovery's name; ARGV[2]: the lease (ms); ARGV[3]: the epoch
-- to publish ('' to renew).
-- Returns 1 when the hold was still there (and the epoch was published, if one was given), else 0.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[3] == '' then redis.call('PEXPIRE', KEYS[1], ARGV[2]) else
  redis.call('SET', KEYS[1], ARGV[3])
end
return 1
