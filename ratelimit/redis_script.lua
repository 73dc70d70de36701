-- GCRA for one key, the same steps as Decide in gcra.go, in nanoseconds, for up to `want`
-- requests at once (a lease: see LeasingStore).
-- KEYS[1]: the key holding the theoretical arrival time (TAT): microseconds since the epoch,
--          then '.' and the nanoseconds past them, three digits ("1795922290896737.428"). A
--          value without them (written by an older version) is whole microseconds.
-- ARGV[1]: the emission interval in nanoseconds (>= 1000).
-- ARGV[2]: the burst (>= 1).
-- ARGV[3]: how many requests to grant at most (>= 1; 1 for one decision).
-- Returns {granted (0 when denied), remaining, reset_after_ns, retry_after_ns}.
--
-- The clock is the server's (TIME), so the instances sharing a limit need not agree on the
-- time. Microseconds since the epoch (about 1.8e15) are exact in a Lua double; nanoseconds
-- (about 1.8e18) are not, so the TAT keeps its nanoseconds apart and the arithmetic works on
-- how far it is ahead of now (at most 366 days, about 3.2e16 ns: within a few ns). An interval
-- that is not a whole number of microseconds (600000/1s is 1666 ns) moves the TAT by exactly
-- that much, as in memory.
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local want = tonumber(ARGV[3]) or 1
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])

-- ahead: tat - now in nanoseconds, 0 for a key never seen or a full bucket.
local ahead = 0
local drained = false
local stored = redis.call('GET', KEYS[1])
if stored then
	local us, ns = string.match(stored, '^(%d+)%.?(%d*)$')
	if us then
		ahead = (tonumber(us) - now) * 1000 + (tonumber(ns) or 0)
		if ahead < 0 then
			ahead = 0
		end
		-- A TAT further ahead than this limit reaches (written under a stricter one) is a
		-- drained bucket of this limit, as in Decide, and is written so even when denied below.
		if ahead > interval * burst then
			ahead = interval * burst
			drained = true
		end
	end
end
-- How many requests fit now: n such that tat + n*interval - burst*interval <= now. With n = 1
-- this is Decide's test (diff = now - allow_at >= 0).
-- set stores a TAT `a` nanoseconds ahead of now. The key lives exactly until the bucket is
-- full again, so idle keys vanish by themselves. %d keeps every digit: tostring would round
-- to 14 significant digits.
local function set(a)
	local us = math.floor(a / 1000)
	redis.call('SET', KEYS[1], string.format('%d.%03d', now + us, a - us * 1000), 'PX', math.ceil(a / 1000000))
end
local fit = math.floor(-ahead / interval) + burst
if fit < 1 then
	-- Denied: the TAT stays as it is (drained to this limit, when it was beyond); the next
	-- request fits at tat + interval - burst*interval.
	if drained then
		set(ahead)
	end
	return {0, 0, ahead, ahead + interval - interval * burst}
end
local granted = math.min(want, fit)
local new_ahead = ahead + interval * granted
set(new_ahead)
return {granted, fit - granted, new_ahead, 0}
