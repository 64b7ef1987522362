-- Let go of a claim: the key is deleted only if it is still this claim.
-- KEYS[1]: the claimed key. ARGV[1]: the claim.
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 0
