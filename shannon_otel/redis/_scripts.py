"""The Lua scripts: every shared transition and admission is one atomic script on the Redis server.

Times are the server's (``TIME``, milliseconds), so processes with skewed clocks agree. Every
state change bumps ``epoch`` and is published on the store's channel as
``name|state|epoch|opened_at_ms|now_ms|reason``; a process applies a message only when its
epoch is newer than the one it holds (a state created afresh counts its epochs from the server's
clock in ms, so a state Redis lost never hides the new one). Keys of one breaker share a hash tag (``{breaker:NAME}``),
so they live in one slot of a Redis Cluster.
"""

from __future__ import annotations

from typing import Final

_PRELUDE: Final = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local st = redis.call('HMGET', KEYS[1], 'state', 'epoch', 'opened_at', 'forced', 'probes_left', 'successes')
-- A hash no script wrote (an operator's, another program's on the prefix) is refused, never half read:
-- its answer cut short at the first nil, it failed in the process (the flusher stopped for every breaker).
-- Numbers are the integers the scripts write: 'inf', 'nan', '1e300' or '1.5' pass tonumber here but not the
-- process's int() (the poll), so each poll warned again, while the scripts went on sharing a state they misread.
local function integer(v) return not v or (string.match(v, '^-?%d+$') ~= nil and #v <= 16) end
if (st[1] and st[1] ~= 'closed' and st[1] ~= 'open' and st[1] ~= 'half_open')
    or not integer(st[2]) or not integer(st[3]) or not integer(st[5]) or not integer(st[6]) then
  error('the breaker state holds values no script wrote')
end
local state = st[1] or 'closed'
-- A state created afresh (first use, or Redis lost it: FLUSHALL, a restart without persistence, expiry)
-- counts its epochs from the server's clock, past every epoch of a lost state that processes still hold
-- (they apply only newer epochs: counting from 0 again, they ignored the new state).
local epoch = tonumber(st[2] or now)
local opened = tonumber(st[3] or '0')
local ttl = tonumber(ARGV[1])
local channel = ARGV[2]
local name = ARGV[3]
local forced = st[4] == '1'
-- A forced state never expires (until a reset): it is written once and then held with no write, so
-- with a TTL a process started a day later read no state, and saw CLOSED what every other one held open.
-- A key's TTL is only ever lengthened: processes may give a breaker different key TTLs (key_ttl_s, or a longer
-- reset_timeout). Set by each, a process with a short one cut the TTL another had set to last its long reset
-- timeout: the OPEN state expired, and every process closed the breaker (shared_state_expired) long before.
local function extend(key)
  local left = redis.call('PTTL', key)
  if left == -1 or (left >= 0 and left < ttl * 1000) then redis.call('EXPIRE', key, ttl) end
end
local function keep()
  if forced then redis.call('PERSIST', KEYS[1]) else extend(KEYS[1]) end
end
local function set_state(to, reason, extra)
  epoch = epoch + 1
  state = to
  if to == 'open' then opened = now end
  redis.call('HSET', KEYS[1], 'state', to, 'epoch', epoch, 'opened_at', opened, 'reason', reason)
  if extra then
    redis.call('HSET', KEYS[1], unpack(extra))
    for i = 1, #extra, 2 do
      if extra[i] == 'forced' then forced = extra[i + 1] == '1' end
    end
  end
  keep()  -- a key created here gets its TTL too
  redis.call('PUBLISH', channel, name .. '|' .. to .. '|' .. epoch .. '|' .. opened .. '|' .. now .. '|' .. reason)
end
local function touch()
  keep()
  if KEYS[2] then extend(KEYS[2]) end
end
-- Why the state is what it is (what opened or closed it, as the poll reads it), in every answer: the caller's local
-- transition says it. Answered without it, a process that learned of another's trip from its flush's answer said
-- 'shared', a reason of no breaker, and one that found the breaker closed at its admission said 'reset'.
-- No state at all (never written, expired, or lost: FLUSHALL, a restart without persistence) is CLOSED because it
-- expired: answered '', a probe's outcome sent after it was lost closed the breaker as 'shared' (no reason at all).
local function why() return redis.call('HGET', KEYS[1], 'reason') or (st[1] and '' or 'shared_state_expired') end
local function answer() return {state, epoch, opened, now, why()} end
"""

# KEYS: state, window, settings. ARGV: ttl, channel, name, calls, failures, slow, slice_ms, slices,
# failure_threshold (-1: none), failure_rate (-1), min_calls, slow_call_rate (-1: no slow calls), settings (the
# flushing process's breaker settings as text). Answers as every script, and then the settings the key held (those of
# the process that flushed before this one, '' for none): processes of one name and different settings are told.
FLUSH: Final = _PRELUDE + """
local settings = redis.call('GET', KEYS[3]) or ''
if settings ~= ARGV[13] then redis.call('SET', KEYS[3], ARGV[13]) end
extend(KEYS[3])
if state == 'closed' then
  local calls, failures, slow = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
  local slice_ms, slices = tonumber(ARGV[7]), tonumber(ARGV[8])
  local slice = math.floor(now / slice_ms)
  local base = slice * slice_ms
  -- A slice is named by its width and number ('c:<slice_ms>:<n>'): processes may give one breaker different
  -- window_s. Named by number alone, each read the others' slices as a clock step ahead or as slices long gone,
  -- and deleted them: failures in processes of different windows never added up, and it opened nowhere.
  -- Written as integers: Lua writes a number of 15 digits or more in exponent form (a window_s of 1e12 s or inf:
  -- 'c:9.007199254741e+15:0'), a field every process's flush then refused, giving up the breaker's shared state.
  local mine = string.format('%.0f:%.0f', slice_ms, slice)
  if calls > 0 then redis.call('HINCRBY', KEYS[2], 'c:' .. mine, calls) end
  if failures > 0 then redis.call('HINCRBY', KEYS[2], 'f:' .. mine, failures) end
  if slow > 0 then redis.call('HINCRBY', KEYS[2], 's:' .. mine, slow) end
  local fields = redis.call('HGETALL', KEYS[2])
  local c, f, s = 0, 0, 0
  local old = {}
  -- older than the key's TTL (the longest any process gave it): expired with it, were it not touched
  local gone = now - math.max(ttl * 1000, redis.call('PTTL', KEYS[2]))
  for i = 1, #fields, 2 do
    local key = fields[i]
    local w, n = string.match(key, '^[cfs]:(%d+):(%-?%d+)$')
    if w then w, n = tonumber(w), tonumber(n) else w, n = slice_ms, tonumber(string.sub(key, 3)) end
    if not n or w < 1 then error('the breaker window holds a field no script wrote') end
    local start = n * w
    -- A slice a whole window or more ahead was counted before the server's clock went back (a step, a failover to
    -- a replica whose clock is behind): dropped, as a local breaker's window does. Kept, it counted for the whole
    -- step (a day back: a day of old failures, and one more call opened the breaker everywhere). A slice of this
    -- width that left the window is dropped; one of another width is its process's to drop (its window may be
    -- longer), or anyone's once older than the key's TTL (that process is gone).
    local ahead = start >= base + slices * slice_ms
    if ahead or (w == slice_ms and n <= slice - slices) or (w ~= slice_ms and start + w <= gone) then
      old[#old + 1] = key
    elseif start + w > base - (slices - 1) * slice_ms then  -- overlaps this process's window
      local kind, v = string.sub(key, 1, 1), tonumber(fields[i + 1])
      if kind == 'c' then c = c + v elseif kind == 'f' then f = f + v else s = s + v end
    end
  end
  if #old > 0 then redis.call('HDEL', KEYS[2], unpack(old)) end
  local threshold, rate, min_calls, slow_rate = tonumber(ARGV[9]), tonumber(ARGV[10]), tonumber(ARGV[11]),
    tonumber(ARGV[12])
  local reason = nil
  if threshold >= 0 and f >= threshold then reason = 'failure_threshold'
  elseif c >= min_calls then
    -- divided, as the local breaker does: f >= rate * c missed rate 0.07 at 7 of 100 (7.000000000000001)
    if rate >= 0 and f / c >= rate then reason = 'failure_rate'
    elseif slow_rate >= 0 and s / c >= slow_rate then reason = 'slow_calls' end
  end
  if reason then
    set_state('open', reason)
    redis.call('DEL', KEYS[2])
  end
end
touch()
local answered = answer()
answered[6] = settings
return answered
"""

# KEYS: state, admission (a key of this admission's own token). ARGV: ttl, channel, name, reset_timeout_ms,
# half_open_probes, probe_lease_ms.
# Returns {verdict, epoch, remaining_ms, now, opened_at, reason}: verdict 'closed' (admit, CLOSED), 'probe' (admitted
# as a half-open probe of that epoch) or 'rejected' (remaining_ms until the reset timeout, -1 unknown); the state's
# reason (see answer()).
# A probe's admission key holds its epoch for probe_lease_ms: a caller that never got the answer (timed out,
# cancelled) gives the slot back with GIVEBACK; an admission key that exists already is GIVEBACK's tombstone
# (the give-back came first: the caller is gone), and nothing is taken. Without it a late ACQUIRE (Redis paused
# past timeout_s) took a probe slot nobody gave back: every caller rejected for probe_lease_s.
# A half-open period whose probes are all taken and whose outcome has not come within probe_lease_ms
# lost them (their process died, or the answer to their admission or their outcome never arrived): the
# next admission starts a new half-open period (new epoch, fresh quota; late outcomes of the old one are
# stale). Without this the breaker stayed half-open with no probe left, rejecting everyone, until its key expired.
ACQUIRE: Final = _PRELUDE + """
keep()
if redis.call('EXISTS', KEYS[2]) == 1 then return {'rejected', epoch, -1, now, opened, why()} end
local reset_ms, probes, lease = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
-- The period is lost once the longest lease of the probes taken in it ran out ('probe_lease'): processes may give
-- their RedisState different probe_lease_s. Before, each judged by its own, and a process with probe_lease_s=0.5
-- took a new period's probe half a second into another's probe of probe_lease_s=60, still running: more probes
-- at once than half_open_probes. It lasts until the latest of its probes' leases ends ('probe_end'), not a lease
-- from its start: a probe taken late in it (a slot given back, then taken again) was overtaken by a new period
-- when the period's first lease ran out, and more probes ran at once than half_open_probes.
local function probe()
  redis.call('SET', KEYS[2], epoch, 'PX', math.max(1, lease))
  if lease > tonumber(redis.call('HGET', KEYS[1], 'probe_lease') or '0') then
    redis.call('HSET', KEYS[1], 'probe_lease', lease)
  end
  if now + lease > (tonumber(redis.call('HGET', KEYS[1], 'probe_end') or '') or 0) then
    redis.call('HSET', KEYS[1], 'probe_end', string.format('%.0f', now + lease))
  end
  return {'probe', epoch, 0, now, opened, why()}
end
if state == 'closed' then return {'closed', epoch, 0, now, opened, why()} end
if state == 'open' then
  if st[4] == '1' then return {'rejected', epoch, -1, now, opened, why()} end
  -- The server's clock went back (a step, a failover to a replica whose clock is behind): the reset timeout is
  -- waited from here, not the step too, as a local breaker does (an hour back held it open an hour everywhere).
  if now < opened then
    opened = now
    redis.call('HSET', KEYS[1], 'opened_at', now)
  end
  local remaining = opened + reset_ms - now
  if remaining > 0 then return {'rejected', epoch, remaining, now, opened, why()} end
  set_state('half_open', 'reset_timeout',
    {'probes_left', probes - 1, 'successes', 0, 'half_open_at', now, 'probe_lease', 0,
     'probe_end', now})
  return probe()
end
local left = tonumber(st[5] or '0')
if left > 0 then
  redis.call('HINCRBY', KEYS[1], 'probes_left', -1)
  return probe()
end
local since = tonumber(redis.call('HGET', KEYS[1], 'half_open_at') or '0')
if now < since then  -- the clock went back: the lost probes' lease runs from here, not the step too
  since = now
  redis.call('HSET', KEYS[1], 'half_open_at', now)
end
local longest = tonumber(redis.call('HGET', KEYS[1], 'probe_lease') or lease)
local ends = tonumber(redis.call('HGET', KEYS[1], 'probe_end') or '') or since + longest
if ends > now + longest then  -- further ahead than any lease from now: taken before the clock went back
  ends = now + longest
  redis.call('HSET', KEYS[1], 'probe_end', string.format('%.0f', ends))
end
if now >= ends then
  set_state('half_open', 'reset_timeout',
    {'probes_left', probes - 1, 'successes', 0, 'half_open_at', now, 'probe_lease', 0,
     'probe_end', now})
  return probe()
end
return {'rejected', epoch, -1, now, opened, why()}
"""

# KEYS: state, admission. ARGV: ttl, channel, name, probe_lease_ms.
# An ACQUIRE whose caller never got its answer (timed out: Redis paused or slow, so it may run later; cancelled)
# gives back the probe slot it took, if it took one in the current half-open period. Idempotent, and in either
# order: the admission key becomes a tombstone for probe_lease_ms, so a second give-back gives nothing and an
# ACQUIRE of that token that has not run yet takes nothing (past the lease, the period starts again anyway).
GIVEBACK: Final = _PRELUDE + """
keep()
local held = tonumber(redis.call('GET', KEYS[2]) or '')
redis.call('SET', KEYS[2], 'void', 'PX', math.max(1, tonumber(ARGV[4])))
if held and state == 'half_open' and epoch == held then redis.call('HINCRBY', KEYS[1], 'probes_left', 1) end
return 1
"""

# KEYS: state, window. ARGV: ttl, channel, name, outcome (success|failure|slow|giveback), epoch,
# success_threshold. A result for another epoch than the current half-open one is stale: ignored.
PROBE: Final = _PRELUDE + """
touch()
if state ~= 'half_open' or epoch ~= tonumber(ARGV[5]) then return answer() end
local outcome = ARGV[4]
if outcome == 'giveback' then
  redis.call('HINCRBY', KEYS[1], 'probes_left', 1)
elseif outcome == 'success' then
  if redis.call('HINCRBY', KEYS[1], 'successes', 1) >= tonumber(ARGV[6]) then
    set_state('closed', 'probe_success')
    redis.call('DEL', KEYS[2])
  end
elseif outcome == 'slow' then
  set_state('open', 'slow_calls')
else
  set_state('open', 'probe_failure')
end
return answer()
"""

# KEYS: state, window. ARGV: ttl, channel, name, mode (trip|force|reset), reason.
# trip: CLOSED -> OPEN only (a process whose own window tripped); force: OPEN and held; reset: CLOSED.
TRANSITION: Final = _PRELUDE + """
touch()
local mode = ARGV[4]
if mode == 'trip' then
  if state == 'closed' then set_state('open', ARGV[5]); redis.call('DEL', KEYS[2]) end
elseif mode == 'force' then
  set_state('open', ARGV[5], {'forced', '1'})
else
  set_state('closed', ARGV[5], {'forced', '0'})
  redis.call('DEL', KEYS[2])
end
return answer()
"""

# KEYS: bucket, last (the server's time at the bucket's last admission). ARGV: interval_ms (1000/rate),
# tau_ms ((burst-1)*interval), ttl_ms[, local_ahead_ms, given_ahead_ms (see below)].
# GCRA: returns the wait in ms before this admission may proceed (0: now); the slot is reserved either way.
# The theoretical arrival time is stored with every digit of the double ('%.17g'): Lua's tostring keeps 14
# significant digits, 0.1 ms of a time in ms since 1970, and an interval under 0.05 ms (a rate over 20,000/s)
# was rounded away at every admission: the bucket never filled, and nothing was limited.
RATE: Final = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local interval, tau = tonumber(ARGV[1]), tonumber(ARGV[2])
local stored = redis.call('GET', KEYS[1])
local tat = tonumber(stored or '0')
local last = tonumber(redis.call('GET', KEYS[2]) or '0')
-- A value no script wrote is refused here (a Lua error: this bucket's key alone is unusable): 'inf', 'nan' or
-- '1e300' went on to SET's PX, which Redis refused as out of range, and that was taken for an outage of all of Redis.
if not tat or tat ~= tat or tat >= 2 ^ 53 or not last or last ~= last or last >= 2 ^ 53 then
  error('the rate bucket holds a value no script wrote')
end
-- The server's clock went back (stepped by an operator or NTP, or a failover to a replica whose clock is behind):
-- the schedule goes back with it, as the local RateLimiter's does. Before, the bucket stayed where the earlier
-- clock had left it, and every admission of every process waited the whole step (an hour back: an hour each).
if now < last then tat = tat - (last - now) end
if tat < now then tat = now end
-- ARGV[4], ARGV[5] (optional): ms ahead of now of the starts the caller's local limiter reserved during an outage,
-- and of those this bucket gave the caller, not reached yet. The bucket (lost with a restart or a FLUSHALL, or left
-- behind while Redis was away) is moved past the first; a bucket found missing past the second too (one found holds
-- them: applied to it, the caller's round trip would be added to the schedule at every admission).
local function past(i)
  local ahead = tonumber(ARGV[i])
  if ahead and ahead == ahead and ahead > 0 and ahead < 2 ^ 53 then return now + ahead end
  return now
end
if ARGV[4] then
  local floor = past(4)
  if not stored and ARGV[5] then floor = math.max(floor, past(5)) end
  if tat < floor then tat = floor end
end
-- The TTL as an integer: a large Lua number goes to Redis in exponent form, and the TTL of a slow rate with a
-- large burst (rate=1e-9, burst=1e6: 1e18 ms) went as '1.000001000000001e+18', refused as no integer: an
-- outage of all of Redis.
local px = string.format('%.0f', math.ceil(tat + interval - now + tonumber(ARGV[3])))
redis.call('SET', KEYS[1], string.format('%.17g', tat + interval), 'PX', px)
redis.call('SET', KEYS[2], string.format('%.17g', now), 'PX', px)
local wait = tat - tau - now
if wait < 0 then wait = 0 end
return tostring(wait)
"""

# KEYS: holders (sorted set member -> lease expiry ms), clock (the server's time at the last acquire).
# ARGV: limit, holder, lease_ms.
# Returns 1 when ``holder`` now holds a slot, 0 when the pool is full. Expired leases (a process that
# died holding a slot) are dropped first. Each member is ``<token>:<its own lease_ms>``: processes sharing a pool
# may give it different lease_s, and every lease keeps its own. A lease that ends more than its own lease_ms
# from now was taken before the server's clock went back (a step, a failover to a replica whose clock is
# behind): it ends its lease_ms from now (a holder keeps its slot), not the step later too (a dead holder's slot
# was taken for the whole step). A member without its lease (none written so) is held to this caller's.
# Before, every lease was held to the caller's lease_ms, and the key expired 2 x the caller's lease_ms later: an
# acquire with lease_s=10 ended, 10 s on, the slot of a task of another process given lease_s=3600 while it ran,
# and more than `limit` ran at once. The key now lives until its latest lease ends (+1 s), never less.
# Leases are read only when the clock went back since the last acquire (or that time is unknown): a lease taken
# at or before it ends within its own length. Read at every acquire, a full pool of 2,000 leases cost ~4 ms of
# Redis per acquire, and each release woke every waiter to pay it.
POOL_ACQUIRE: Final = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local lease = tonumber(ARGV[3])
local last = tonumber(redis.call('GET', KEYS[2]) or '')
if not last or now < last then
  local held = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
  for i = 1, #held, 2 do
    local own = math.min(tonumber(string.match(held[i], ':(%d+)$') or lease), 86400000)
    if tonumber(held[i + 1]) > now + own then redis.call('ZADD', KEYS[1], now + own, held[i]) end
  end
end
redis.call('SET', KEYS[2], string.format('%.0f', now), 'PX', 86401000)  -- outlives the longest lease (1 day)
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('ZADD', KEYS[1], now + lease, ARGV[2])
  local latest = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
  redis.call('PEXPIRE', KEYS[1], math.max(tonumber(latest[2]) - now, lease) + 1000)
  return 1
end
return 0
"""

# KEYS: holders. ARGV: channel, pool name, holder. Publishes so waiters retry at once.
POOL_RELEASE: Final = """
local removed = redis.call('ZREM', KEYS[1], ARGV[3])
redis.call('PUBLISH', ARGV[1], ARGV[2])
return removed
"""

# KEYS: a key of the store's own (never left behind). The store's check that Redis is back after an
# outage: a write, refused as the scripts' writes are (OOM with noeviction, a READONLY replica, an ACL user
# without EVAL): a PING answered while every script failed ended each such outage at once, to begin again
# at the next script (the outage logged twice a second, shannon.shared.available flapping).
# ARGV: the store's channels (none when Redis is known available). An empty message on each (ignored by every
# subscriber): an ACL user without the channels (Redis 7 gives a new user none) had its every transition and
# pool release refused while this check, which published nothing, said Redis was back (the outage flapped).
# TIME, which every other script reads first, is in no ACL category but @fast: a user given +@read +@write
# +@scripting +@pubsub lacks it. Unchecked here, each check ended the outage and the next poll (TIME) began it again,
# warned each poll_interval_s; and a script's error for it ("can't run this command") names no command.
ALIVE: Final = """
local t = redis.pcall('TIME')
if t.err then
  return redis.error_reply('NOPERM this user has no permissions to run the TIME command, which every shannon-otel ' ..
    'script runs (add +time to its ACL)')
end
redis.call('SET', KEYS[1], '1', 'PX', 1000)
redis.call('DEL', KEYS[1])
for i = 1, #ARGV do redis.call('PUBLISH', ARGV[i], '') end
return 1
"""
