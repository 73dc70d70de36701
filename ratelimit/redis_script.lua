-- GCRA for one key, the same steps as Decide in gcra.go, in microseconds, for up to `want`
-- requests at once (a lease: see LeasingStore).
-- KEYS[1]: the key holding the theoretical arrival time (TAT, microseconds since the epoch).
-- ARGV[1]: the emission interval in microseconds (>= 1).
-- ARGV[2]: the burst (>= 1).
-- ARGV[3]: how many requests to grant at most (>= 1; 1 for one decision).
-- Returns {granted (0 when denied), remaining, reset_after_us, retry_after_us}.
--
-- The clock is the server's (TIME), so the instances sharing a limit need not agree on the
-- time. Microseconds since the epoch (about 1.8e15) are exact in a Lua double; nanoseconds
-- (about 1.8e18) are not.
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local want = tonumber(ARGV[3]) or 1
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])

local tat = tonumber(redis.call('GET', KEYS[1]))
if tat == nil or tat < now then
	tat = now
end
-- How many requests fit now: n such that tat + n*interval - burst*interval <= now. With n = 1
-- this is Decide's test (diff = now - allow_at >= 0).
local fit = math.floor((now - tat) / interval) + burst
if fit < 1 then
	-- Denied: the TAT stays as it is; the next request fits at tat + interval - burst*interval.
	return {0, 0, tat - now, tat + interval - interval * burst - now}
end
local granted = math.min(want, fit)
local new_tat = tat + interval * granted
local reset = new_tat - now
-- The key lives exactly until the bucket is full again, so idle keys vanish by themselves.
-- %d keeps every digit: tostring would round to 14 significant digits.
redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', math.ceil(reset / 1000))
return {granted, fit - granted, reset, 0}
