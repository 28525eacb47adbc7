-- Rotate through the paths given after `--` (wrk ... URL -- /plaintext /json), one per request,
-- and print the same JSON summary as wrk_json.lua. Used by the workers x threads sweep.
dofile("/srv/bench/wrk_json.lua")

local requests = {}
local next_index = 0

init = function(args)
  for _, path in ipairs(args) do
    requests[#requests + 1] = wrk.format(nil, path)
  end
end

request = function()
  next_index = next_index % #requests + 1
  return requests[next_index]
end
