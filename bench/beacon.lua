-- wrk script for `make bench`: POST /t/e beacons as the shim sends them (~600 bytes, an
-- AddToCart with contact fields to hash, from a returning browser's cookies), each with a fresh
-- event_id so that no ledger or dedup step can swallow one.
--   wrk ... -s bench/beacon.lua URL -- ORIGIN RUN_ID
-- RUN_ID must differ between runs against the same server (event ids are claimed for 48 h).
-- Prints one line `BENCH_JSON {...}` with the counts and latency percentiles (microseconds).
local counter = 0
local thread_id = 0
local threads = 0
local origin = ""
local run_id = "0"

function setup(thread)
  thread:set("id", threads)
  threads = threads + 1
end

function init(args)
  thread_id = id
  origin = args[1]
  run_id = args[2] or "0"
end

function request()
  counter = counter + 1
  local body = string.format(
    '{"event_name":"AddToCart","event_id":"bench-%s-%d-%08d",' ..
    '"event_source_url":"%s/products/ceramic-mug-blue?variant=4242&utm_source=facebook&utm_medium=paid",' ..
    '"referrer_url":"%s/collections/kitchen","event_time_ms":%d,' ..
    '"fbp":"fb.1.1700000000000.123456789","fbc":"fb.1.1700000000000.IwAR2benchClickId",' ..
    '"custom_data":{"value":12.5,"currency":"EUR","content_ids":["mug-blue-4242"],"content_type":"product",' ..
    '"content_name":"Ceramic mug, blue","num_items":1},' ..
    '"user_data":{"em":"Jane.Doe@Example.com","ph":"+1 (650) 555-1212","fn":"Jane","ln":"Doe",' ..
    '"ct":"Menlo Park","zp":"94025","country":"US"}}',
    run_id, thread_id, counter, origin, origin, os.time() * 1000)
  return wrk.format("POST", "/t/e", {
    ["Content-Type"] = "text/plain;charset=UTF-8",
    ["Origin"] = origin,
    ["User-Agent"] = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) bench",
    ["CF-Connecting-IP"] = "198.51.100.7",
    -- A returning browser: the cookies the Worker set on an earlier page (`_fbp`, and the browser
    -- id it sets with data controls on), as a browser sends them back.
    ["Cookie"] = "_fbp=fb.1.1700000000000.123456789; _capi_eid=4f0c2b9e8d7a6c5b4a3f2e1d0c9b8a7f",
  }, body)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"non2xx":%d,"connect":%d,"read":%d,"write":%d,"timeout":%d,' ..
    '"p50_us":%.0f,"p90_us":%.0f,"p99_us":%.0f,"max_us":%.0f}\n',
    summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
