-- wrk script: POST /t/e beacons, each with a fresh event_id, as the shim sends them.
local counter = 0
local thread_id = 0
local threads = 0

function setup(thread)
  thread:set("id", threads)
  threads = threads + 1
end

function init(args)
  thread_id = id
  origin = args[1]
end

function request()
  counter = counter + 1
  local body = string.format(
    '{"event_name":"AddToCart","event_id":"bench-%d-%d","event_source_url":"%s/p/mug","event_time_ms":%d,' ..
    '"fbp":"fb.1.1700000000000.123456789","custom_data":{"value":12.5,"currency":"EUR","content_ids":["mug"]},' ..
    '"user_data":{"em":"jane.doe@example.com","ph":"+1 650 555 1212","country":"US"}}',
    thread_id, counter, origin, os.time() * 1000)
  return wrk.format("POST", "/t/e", {
    ["Content-Type"] = "text/plain;charset=UTF-8",
    ["Origin"] = origin,
    ["User-Agent"] = "Mozilla/5.0 (bench) wrk",
    ["CF-Connecting-IP"] = "198.51.100.7",
  }, body)
end
