-- A steady, below-capacity load: after each response a connection waits the milliseconds given
-- after `--` (wrk ... URL -- 32), so N connections send about N x 1000 / (wait + latency) req/s.
-- Prints the same JSON summary as wrk_json.lua. Used to compare p99 at one rate for every stack.
dofile("/srv/bench/wrk_json.lua")

local wait_ms = 0

init = function(args)
  wait_ms = tonumber(args[1]) or 0
end

delay = function()
  return wait_ms
end
