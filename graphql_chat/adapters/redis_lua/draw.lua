-- A draw: a new chat number, a new message number, or a revision of an issued message.
-- KEYS[1]: the epoch key the application's draws belong to.
-- ARGV[1]: the epoch the seeds below were read in ('' for none)
-- ARGV[2]: the application's key prefix
-- ARGV[3]: an idempotency key's hash ('' for none); ARGV[4]: the create's fingerprint;
-- ARGV[5]: the key's window (seconds)
-- ARGV[6]: the seed of the chats counter ('' for none)
-- ARGV[7]: the chat number ('' to draw a new chat)
-- ARGV[8]: the message number to revise ('' to draw a new message)
-- ARGV[9]: the seed of the chat's messages counter ('' for none)
-- Returns {number, revision, epoch}, a replayed claim {number, revision, epoch, time,
-- 1 + stored}, or a code: {-1, 0, 0} no open epoch, {-2, 0, epoch} chats unseeded,
-- {-3, 0, epoch} messages unseeded, {-4, 0, epoch} seeds of another epoch, {-5, 0, epoch}
-- the key claimed by another create, {0, 0, epoch} no such chat, {0, 1, epoch} no such message.
local epoch = tonumber(redis.call('GET', KEYS[1]))
if not epoch then return {-1, 0, 0} end
if ARGV[1] ~= '' and tonumber(ARGV[1]) ~= epoch then return {-4, 0, epoch} end
local app = ARGV[2] .. ':e' .. epoch

local claim = nil
if ARGV[3] ~= '' then
  claim = ARGV[2] .. ':k:' .. ARGV[3]
  local found = redis.call('GET', claim)
  if found then
    local fp, n, r, e, t, s = string.match(found, '^(%x+) (%d+) (%d+) (%d+) (%d+) (%d)$')
    if fp ~= ARGV[4] then return {-5, 0, epoch} end
    return {tonumber(n), tonumber(r), tonumber(e), tonumber(t), 1 + tonumber(s)}
  end
end

if ARGV[6] ~= '' then redis.call('SET', app .. ':chats', ARGV[6], 'NX') end
local chats = redis.call('GET', app .. ':chats')
if not chats then return {-2, 0, epoch} end

local n
local revised = ARGV[7] ~= ''  -- a message's draw orders its write; a chat's has no revision
if not revised then
  n = redis.call('INCR', app .. ':chats')
  redis.call('SET', app .. ':c:' .. n, 0, 'NX')  -- its messages start at 1
else
  if tonumber(ARGV[7]) > tonumber(chats) then return {0, 0, epoch} end
  local counter = app .. ':c:' .. ARGV[7]
  if ARGV[9] ~= '' then redis.call('SET', counter, ARGV[9], 'NX') end
  local last = redis.call('GET', counter)
  if not last then return {-3, 0, epoch} end
  if ARGV[8] == '' then n = redis.call('INCR', counter) else
    n = tonumber(ARGV[8])
    if n > tonumber(last) then return {0, 1, epoch} end
  end
end

-- The application's next revision: Redis's clock in microseconds, strictly increasing (a
-- draw's time, so that times and numbers agree).
local now = redis.call('TIME')
local clock = tonumber(now[1]) * 1000000 + tonumber(now[2])
local rev = math.max(tonumber(redis.call('GET', ARGV[2] .. ':rev') or '0') + 1, clock)
redis.call('SET', ARGV[2] .. ':rev', rev)

if claim then
  local revision = 0
  if revised then revision = rev end
  local drawn = string.format('%d %.0f %d %.0f', n, revision, epoch, rev)
  redis.call('SET', claim, ARGV[4] .. ' ' .. drawn .. ' 0', 'EX', ARGV[5])
end
return {n, rev, epoch}
