-- POST /items with a key no request has used before, so every request stores a row (201), and
-- print the same JSON summary as wrk_json.lua. Section 9 of `make bench`: the write path.
dofile("/srv/bench/wrk_json.lua")

local prefix = ""
local count = 0

init = function(args)
  -- Unique per wrk thread and run: the time, the thread's own table address and a random number.
  math.randomseed(os.time() + math.floor(os.clock() * 1e6))
  prefix = string.format("w%x-%s-%x-", os.time(), tostring({}):match("0x(%x+)") or "0", math.random(0, 0x7fffffff))
end

request = function()
  count = count + 1
  local body = string.format('{"key": "%s%d"}', prefix, count)
  return wrk.format("POST", "/items", {["Content-Type"] = "application/json"}, body)
end
