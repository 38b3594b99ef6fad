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

  -- Signs unsubscribe links; keep it stable (links in sent mail break when it changes), e.g.
  --   unsubscribe = { secret = file("/etc/nudge/unsubscribe.secret") },
  -- The dispatcher's retry and lease settings are under `dispatch` (docs/delivery.md).

  -- Channel plugins, one entry per instance (docs/plugins.md lists each plugin's keys). This
  -- example writes email to a file; for real mail use the smtp plugin (with limits), e.g.
  --   { name = "email", plugin = "smtp", concurrency = 16, rate = 20,
  --     config = { host = "smtp.example.com", port = 587,
  --     from = "shop@example.com", from_name = "Demo Store",
  --     username = "shop", password = env("SMTP_PASSWORD") } },
  channels = {
    { name = "outbox", plugin = "file", channel = "email",
      config = { path = env("NUDGE_OUTBOX", "/tmp/nudge-outbox.txt") } },
  },
  shutdown_timeout_ms = 10000,
}
