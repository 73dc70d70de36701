-- GCRA for one key, the same steps as Decide in gcra.go, in microseconds.
-- KEYS[1]: the key holding the theoretical arrival time (TAT, microseconds since the epoch).
-- ARGV[1]: the emission interval in microseconds (>= 1).
-- ARGV[2]: the burst (>= 1).
-- Returns {allowed (1 or 0), remaining, reset_after_us, retry_after_us}.
--
-- The clock is the server's (TIME), so the instances sharing a limit need not agree on the
-- time. Microseconds since the epoch (about 1.8e15) are exact in a Lua double; nanoseconds
-- (about 1.8e18) are not.
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])

local tat = tonumber(redis.call('GET', KEYS[1]))
if tat == nil or tat < now then
	tat = now
end
local new_tat = tat + interval
local allow_at = new_tat - interval * burst
local diff = now - allow_at
if diff < 0 then
	-- Denied: the TAT stays as it is.
	return {0, 0, tat - now, -diff}
end
local reset = new_tat - now
-- The key lives exactly until the bucket is full again, so idle keys vanish by themselves.
-- %d keeps every digit: tostring would round to 14 significant digits.
redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', math.ceil(reset / 1000))
return {1, math.floor(diff / interval), reset, 0}
