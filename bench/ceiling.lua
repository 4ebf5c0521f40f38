-- wrk script: POST /ceiling with the same small JSON body as bench.loadgen's ceiling mode,
-- a fresh client_message_id per request. Used to check that the Python load generator is not
-- what limits the measured rate.
local counter = 0
request = function()
  counter = counter + 1
  local body = '{"choice": "neither", "client_message_id": "wrk-' .. counter .. '"}'
  return wrk.format("POST", "/ceiling", {["Content-Type"] = "application/json"}, body)
end
