-- a unique payment per request: every delivery is new to the inbox
-- (BENCH_TAG differs per run, so no run's payments are duplicates of another's)
local counter = 0
local thread_id = 0
local tag = os.getenv("BENCH_TAG") or "t"
function setup(thread)
  thread:set("id", thread_id)
  thread_id = thread_id + 1
end
function init(args)
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["X-API-Key"] = "bench-key-0123456789"  -- benchmarks/apps.py API_KEY
end
function request()
  counter = counter + 1
  local body = string.format('{"ID":"%s-%d-%d","InvoiceID":"i-1","Outlet":"Kemang","Number":"PAY-%d","Amount":75240,"Method":"QRIS","Date":"2026-11-27","Created":"2026-11-27T14:05:31.4410293","Creator":"Dewi","CreatorID":"u-1"}', tag, id, counter, counter)
  return wrk.format(nil, nil, nil, body)
end
