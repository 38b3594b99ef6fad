-- tests/bench/intake_checkout.lua — wrk script for bench_intake.sh: posts the signed Shopify
-- checkouts/create fixture to /v1/webhooks/shopify with a new X-Shopify-Event-Id per request, so
-- every request is a new event (the body, and so its signature, stay the same).
--
-- Environment: BODY_FILE (the fixture), SIG (its base64 HMAC), SHOP, RUN (a prefix unique to this
-- run), PACE_MS (optional: wait this long between requests on each connection).

local counter, thread_id = 0, 0
local body, sig, shop, run, pace
local threads = {}

function setup(thread)
  thread:set("tid", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  thread_id = tid
  local f = assert(io.open(os.getenv("BODY_FILE"), "rb"))
  body = f:read("*a")
  f:close()
  sig = os.getenv("SIG")
  shop = os.getenv("SHOP")
  run = os.getenv("RUN")
  pace = tonumber(os.getenv("PACE_MS") or "")
end

function request()
  counter = counter + 1
  return wrk.format("POST", "/v1/webhooks/shopify", {
    ["Content-Type"] = "application/json",
    ["X-Shopify-Topic"] = "checkouts/create",
    ["X-Shopify-Shop-Domain"] = shop,
    ["X-Shopify-Hmac-Sha256"] = sig,
    ["X-Shopify-Event-Id"] = run .. "-" .. thread_id .. "-" .. counter,
  }, body)
end

if os.getenv("PACE_MS") then
  function delay()
    return pace
  end
end

function done(summary, latency, requests)
  local secs = summary.duration / 1e6
  local bad = summary.errors.status +  -- status >= 400 summary.errors.connect + summary.errors.read +
              summary.errors.write + summary.errors.timeout
  io.write(string.format("RESULT rate=%.0f p50_ms=%.2f p99_ms=%.2f requests=%d errors=%d\n",
    summary.requests / secs, latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    summary.requests, bad))
end
