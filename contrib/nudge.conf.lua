-- nudge.conf.lua — the daemon's configuration. A Lua file that returns a table.
--
-- Check it with `nudge config check nudge.conf.lua`; list every key with `nudge config keys`.
-- An unknown key, a wrong type or a missing required value stops startup with a sentence naming the
-- key and the line. Secrets: env("NAME") reads an environment variable; file("/path") reads a file
-- that only its owner may read (chmod 600).
return {
  database = {
    -- make demo exports NUDGE_DATABASE; set it, or write the conninfo here.
    conninfo = env("NUDGE_DATABASE"),
    pool_size = 4,
    statement_timeout_ms = 10000,
  },

  http = {
    -- loopback by default; put a TLS proxy in front for the internet.
    listen = env("NUDGE_LISTEN", "127.0.0.1:8025"),
    max_body_bytes = 1048576,
  },

  log = {
    level = "info",              -- debug | info | warn | error
    format = "logfmt",           -- logfmt | json
  },

  store = {
    name = "Demo Store",
    timezone = "Europe/Berlin",  -- for customers whose time zone is unknown
    postal_address = "Demo Store, 1 Example Street, 10115 Berlin, Germany",
    base_url = "http://127.0.0.1:8025",
  },

  senders = { threads = 4 },

  -- The shared HTTP client the Twilio and Messenger plugins send with.
  http_client = { timeout_ms = 30000, connect_timeout_ms = 10000, max_response_bytes = 1048576 },
  -- Event intake (docs/events.md). The demo values below are for `make demo` only: put your
  -- shop's client secret and a random API key in files (chmod 600) and read them with file().
  intake = {
    default_country_code = "49",  -- for phone numbers written without +CC
    api_keys = {
      { name = "demo", key = env("NUDGE_API_KEY", "demo-api-key") },
    },
    -- One entry per shop (two for one shop while you rotate its secret).
    shopify = {
      { shop = "demo-store.myshopify.com", secret = env("NUDGE_SHOPIFY_SECRET", "demo-shopify-secret") },
    },
    woocommerce = {
      { secret = env("NUDGE_WOOCOMMERCE_SECRET", "demo-woocommerce-secret") },
    },
    commit_timeout_ms = 4000,     -- answer 503 (Shopify retries) rather than keep it waiting
  },

  -- Channel plugins, one entry per instance (docs/plugins.md lists each plugin's keys). The demo
  -- writes email to a file; for real mail use the smtp plugin, e.g.
  --   { name = "email", plugin = "smtp", config = { host = "smtp.example.com", port = 587,
  -- Signs unsubscribe links; keep it stable (links in sent mail break when it changes), e.g.
  --   unsubscribe = { secret = file("/etc/nudge/unsubscribe.secret") },
  -- The dispatcher's retry and lease settings are under `dispatch` (docs/delivery.md).

  -- Channel plugins, one entry per instance (docs/plugins.md lists each plugin's keys). This
  -- example writes email to a file; for real mail use the smtp plugin (with limits), e.g.
  --   { name = "email", plugin = "smtp", concurrency = 16, rate = 20,
  --     config = { host = "smtp.example.com", port = 587,
  --     from = "shop@example.com", from_name = "Demo Store",
  --     username = "shop", password = env("SMTP_PASSWORD") } },
  -- and for SMS the twilio plugin (its webhook is /v1/webhooks/<name>: give Twilio that public URL
  -- for incoming messages too), e.g.
  --   { name = "sms", plugin = "twilio", config = {
  --     account_sid = env("TWILIO_ACCOUNT_SID"), auth_token = env("TWILIO_AUTH_TOKEN"),
  --     from = "+15005550006",            -- or messaging_service_sid = "MG…"
  --     status_callback_url = "https://shop.example/v1/webhooks/sms",
  --     default_country = "1", rate_per_second = 1 } },
  -- and for Facebook Messenger the messenger plugin (its webhook is /v1/webhooks/<name>: enter
  -- that public URL and the verify_token as the callback in the app dashboard), e.g.
  --   { name = "messenger", plugin = "messenger", config = {
  --     page_access_token = env("FB_PAGE_TOKEN"), app_secret = env("FB_APP_SECRET"),
  --     verify_token = env("FB_VERIFY_TOKEN"), page_id = "1234567890",
  --     graph_version = "v25.0" } },
  channels = {
    { name = "outbox", plugin = "file", channel = "email",
      config = { path = env("NUDGE_OUTBOX", "/tmp/nudge-outbox.txt") } },
  },
  -- Contact pressure (docs/policy.md): texts only 08:00-21:00 in the recipient's time zone; at
  -- most 1 marketing email a day and 3 a week, 2 marketing texts a week.
  policy = {
    quiet_hours = { sms = "08:00-21:00" },
    caps = {
      { channel = "email", max = 1, per = "1d" },
      { channel = "email", max = 3, per = "7d" },
      { channel = "sms", max = 2, per = "7d" },
    },
    -- Double opt-in: email opt-ins wait for the confirm link in a confirmation email before any
    -- marketing email goes out (required in Germany and Austria, good practice everywhere).
    double_opt_in = { email = false, hold = "7d" },
  },

  shutdown_timeout_ms = 10000,
}
