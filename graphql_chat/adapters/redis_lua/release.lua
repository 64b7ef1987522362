-- Let go of a hold: the key is deleted only if this recovery still holds it.
-- KEYS[1]: the held key. ARGV[1]: the recovery's name.
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 0
