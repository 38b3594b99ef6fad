-- tests/bench/intake_checkout.lua — wrk script for bench_intake.sh: posts signed Shopify
-- checkouts/create bodies to /v1/webhooks/shopify with a new X-Shopify-Event-Id per request, so
-- every request is a new event. The bodies are variants of the fixture (bench_intake.sh makes
-- them: another customer and checkout token each), used in turn.
--
-- Environment: BODY_DIR (1.json … N.json and sigs, their base64 HMACs one per line), SHOP, RUN (a
-- prefix unique to this run), PACE_MS (optional: wait this long between requests on each
-- connection).

local counter, thread_id = 0, 0
local bodies, sigs, shop, run, pace = {}, {}, nil, nil, nil
local threads = {}

function setup(thread)
  thread:set("tid", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  thread_id = tid
  local dir = os.getenv("BODY_DIR")
  for line in io.lines(dir .. "/sigs") do
    local f = assert(io.open(dir .. "/" .. (#sigs + 1) .. ".json", "rb"))
    table.insert(bodies, f:read("*a"))
    f:close()
    table.insert(sigs, line)
  end
  shop = os.getenv("SHOP")
  run = os.getenv("RUN")
  pace = tonumber(os.getenv("PACE_MS") or "")
end

function request()
  counter = counter + 1
  -- Threads start at different variants, so they do not post the same customer in step.
  local i = (counter + thread_id * 7919) % #bodies + 1
  local body, sig = bodies[i], sigs[i]
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
  local bad = summary.errors.status + summary.errors.connect + summary.errors.read +
              summary.errors.write + summary.errors.timeout  -- status: answers >= 400
  io.write(string.format("RESULT rate=%.0f p50_ms=%.2f p99_ms=%.2f requests=%d errors=%d\n",
    summary.requests / secs, latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    summary.requests, bad))
end
