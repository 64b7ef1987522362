-- A new application: its chats counter starts at 0 in the open epoch.
-- KEYS[1]: the epoch key its draws belong to.
-- ARGV[1]: the application's key prefix; ARGV[2]: the epoch to open when there is none
-- ('' for none: then a recovery opens it).
local epoch = tonumber(redis.call('GET', KEYS[1]))
if not epoch and ARGV[2] ~= '' and redis.call('SET', KEYS[1], ARGV[2], 'NX') then
  epoch = tonumber(ARGV[2])
end
if epoch then redis.call('SET', ARGV[1] .. ':e' .. epoch .. ':chats', 0, 'NX') end
return 0
