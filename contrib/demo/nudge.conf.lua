-- contrib/demo/nudge.conf.lua — what `make demo` runs the daemon with: the shipped workflows, email
-- through the smtp plugin into a local smtp-sink that contrib/demo.sh starts, and a clock that runs
-- 3600 times faster (clock.speed, for demos and tests only) so the abandoned cart's one-hour wait
-- takes a second. contrib/demo.sh sets the NUDGE_* variables and writes a
-- copy with the sink's port to .work/demo/nudge.conf.lua.
return {
  database = { conninfo = env("NUDGE_DATABASE") },
  http = { listen = env("NUDGE_LISTEN", "127.0.0.1:8025") },
  log = { level = "info" },
  store = {
    name = "Demo Store",
    timezone = "Europe/Berlin",
    postal_address = "Demo Store, 1 Example Street, 10115 Berlin, Germany",
    -- Unsubscribe links point at this daemon, so the demo can follow one.
    base_url = env("NUDGE_BASE_URL", "http://127.0.0.1:8025"),
  },
  -- The demo store's webhooks and signup form (docs/events.md): demo secrets, never for real use.
  intake = {
    api_keys = { { name = "signup-form", key = "demo-api-key" } },
    shopify = { { shop = "demo-store.myshopify.com", secret = "demo-shopify-secret" } },
  },
  unsubscribe = { secret = "demo only: set a long random secret with env() or file()" },
  clock = { speed = 3600 },
  dispatch = { poll_ms = 200 },
  channels = {
    { name = "email", plugin = "smtp", concurrency = 4, rate = 50,
      config = { host = "127.0.0.1", port = 2525, -- demo.sh writes the sink's port here
                 starttls = "off", from = "shop@demo-store.example", from_name = "Demo Store" } },
  },
  shutdown_timeout_ms = 10000,
}
