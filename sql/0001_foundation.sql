-- 0001_foundation.sql — the first schema: customers, consent, suppressions, events, workflows,
-- instances, the effect journal and the message outbox.
--
-- Hot tables (events, consents, instances, effects, messages, message_attempts) carry customer_id in
-- their primary key, so the schema can be distributed by customer (Citus-style) without rewriting it.
-- Timestamps are timestamptz; text enums are CHECK constraints so a new state is one migration away.

CREATE TABLE customers (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email           text,          -- normalised: trimmed, lower-case
    phone           text,          -- E.164
    messenger_psid  text,
    first_name      text,
    last_name       text,
    timezone        text,          -- IANA name; NULL means the store's default
    locale          text,
    birthday        date,
    attributes      jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    erased_at       timestamptz    -- set by `nudge customer forget`; personal columns are NULL then
);
CREATE UNIQUE INDEX customers_email_key ON customers (email) WHERE email IS NOT NULL;
CREATE UNIQUE INDEX customers_phone_key ON customers (phone) WHERE phone IS NOT NULL;
CREATE UNIQUE INDEX customers_psid_key ON customers (messenger_psid) WHERE messenger_psid IS NOT NULL;
CREATE INDEX customers_birthday_idx ON customers (extract(month FROM birthday), extract(day FROM birthday))
    WHERE birthday IS NOT NULL;

-- A customer's ids in each store or system ("shopify:my-shop", "woocommerce", "api").
CREATE TABLE customer_identities (
    source       text NOT NULL,
    external_id  text NOT NULL,
    customer_id  bigint NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source, external_id)
);
CREATE INDEX customer_identities_customer_idx ON customer_identities (customer_id);

-- The consent ledger: append-only; the newest row per (customer, channel, purpose) is in force.
CREATE TABLE consents (
    customer_id  bigint NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    id           bigint GENERATED ALWAYS AS IDENTITY,
    channel      text NOT NULL CHECK (channel IN ('email', 'sms', 'messenger')),
    purpose      text NOT NULL CHECK (purpose IN ('marketing', 'transactional')),
    status       text NOT NULL CHECK (status IN ('granted', 'withdrawn', 'pending')),
    source       text NOT NULL,   -- store webhook, form, api, inbound_stop, unsubscribe_link, …
    evidence     jsonb NOT NULL DEFAULT '{}'::jsonb,  -- ip, user agent, wording shown
    recorded_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (customer_id, id)
);
CREATE INDEX consents_current_idx ON consents (customer_id, channel, purpose, recorded_at DESC, id DESC);

CREATE VIEW consent_current AS
SELECT DISTINCT ON (customer_id, channel, purpose)
       customer_id, channel, purpose, status, source, recorded_at
  FROM consents
 ORDER BY customer_id, channel, purpose, recorded_at DESC, id DESC;

-- Addresses nobody may message. address_hash (sha256 of the normalised address) survives erasure,
-- so a re-import of a forgotten customer cannot bring the address back.
CREATE TABLE suppressions (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    channel       text NOT NULL CHECK (channel IN ('email', 'sms', 'messenger')),
    address       text,           -- NULL once the customer is erased
    address_hash  bytea NOT NULL,
    reason        text NOT NULL,  -- hard_bounce, complaint, unsubscribed, stop, manual, erased, …
    source        text NOT NULL,
    customer_id   bigint REFERENCES customers (id) ON DELETE SET NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz,
    UNIQUE (channel, address_hash)
);

-- Every accepted store or API event. (source, dedupe_key) makes a redelivered webhook a no-op.
CREATE TABLE events (
    customer_id  bigint NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    id           bigint GENERATED ALWAYS AS IDENTITY,
    source       text NOT NULL,
    delivery_id  text,            -- the provider's delivery id (X-Shopify-Webhook-Id …)
    dedupe_key   text NOT NULL,
    type         text NOT NULL,   -- normalised: checkout.started, order.placed, …
    data         jsonb NOT NULL DEFAULT '{}'::jsonb,
    occurred_at  timestamptz NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (customer_id, id)
);
CREATE UNIQUE INDEX events_dedupe_key ON events (source, dedupe_key);
CREATE INDEX events_customer_type_idx ON events (customer_id, type, occurred_at DESC);
CREATE INDEX events_received_idx ON events (received_at);

CREATE TABLE workflows (
    name            text PRIMARY KEY,
    active_version  integer,
    enabled         boolean NOT NULL DEFAULT true,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);

-- Each deployed script, kept forever: a running instance keeps the version it started on.
CREATE TABLE workflow_versions (
    workflow     text NOT NULL REFERENCES workflows (name) ON DELETE CASCADE,
    version      integer NOT NULL,
    source       text NOT NULL,
    source_hash  text NOT NULL,   -- sha256 hex of source
    definition   jsonb NOT NULL DEFAULT '{}'::jsonb,  -- trigger, key, exits … as loaded
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workflow, version),
    UNIQUE (workflow, source_hash)
);

-- One row per workflow instance. Sleeping instances are rows, not memory.
CREATE TABLE instances (
    customer_id       bigint NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    id                bigint GENERATED ALWAYS AS IDENTITY,
    workflow          text NOT NULL,
    version           integer NOT NULL,
    key               text NOT NULL,  -- one live instance per (workflow, key)
    status            text NOT NULL CHECK (status IN
                          ('ready', 'running', 'waiting', 'completed', 'exited', 'failed', 'parked',
                           'cancelled')),
    wake_at           timestamptz,    -- when a waiting instance is due (timer or wait_for timeout)
    waiting_for       jsonb,          -- the event match of a pending wait_for
    next_seq          integer NOT NULL DEFAULT 0,
    attempt           integer NOT NULL DEFAULT 0,  -- fences writes from a stale lease holder
    lease_owner       text,
    lease_until       timestamptz,
    trigger_event_id  bigint,
    error             text,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    finished_at       timestamptz,
    PRIMARY KEY (customer_id, id),
    FOREIGN KEY (workflow, version) REFERENCES workflow_versions (workflow, version)
);
CREATE UNIQUE INDEX instances_live_key ON instances (workflow, key)
    WHERE status IN ('ready', 'running', 'waiting', 'parked');
CREATE INDEX instances_due_idx ON instances (wake_at) WHERE status IN ('ready', 'waiting');
CREATE INDEX instances_waiting_for_idx ON instances (customer_id) WHERE waiting_for IS NOT NULL;

-- The effect journal: what each step of an instance did, replayed instead of re-done.
CREATE TABLE effects (
    customer_id  bigint NOT NULL,
    instance_id  bigint NOT NULL,
    seq          integer NOT NULL,
    kind         text NOT NULL,   -- wait, wait_until, wait_for, send, query, split, emit, log, customer
    args         jsonb NOT NULL DEFAULT '{}'::jsonb,
    result       jsonb,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (customer_id, instance_id, seq),
    FOREIGN KEY (customer_id, instance_id) REFERENCES instances (customer_id, id) ON DELETE CASCADE
);

-- The outbox: one row per send step, with the data snapshot it renders from.
CREATE TABLE messages (
    customer_id      bigint NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    id               bigint GENERATED ALWAYS AS IDENTITY,
    instance_id      bigint,
    seq              integer,
    workflow         text,
    channel          text NOT NULL CHECK (channel IN ('email', 'sms', 'messenger')),
    plugin_instance  text,           -- which configured sender; NULL means the channel's default
    template         text NOT NULL,
    purpose          text NOT NULL DEFAULT 'marketing' CHECK (purpose IN ('marketing', 'transactional')),
    priority         integer NOT NULL DEFAULT 0,
    data             jsonb NOT NULL DEFAULT '{}'::jsonb,
    status           text NOT NULL DEFAULT 'queued' CHECK (status IN
                         ('queued', 'sending', 'retry', 'ambiguous', 'sent', 'delivered', 'failed',
                          'skipped', 'deferred')),
    attempt          integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    lease_owner      text,
    lease_until      timestamptz,
    provider_id      text,
    last_error       text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    sent_at          timestamptz,
    PRIMARY KEY (customer_id, id),
    UNIQUE (customer_id, instance_id, seq)
);
CREATE INDEX messages_due_idx ON messages (next_attempt_at) WHERE status IN ('queued', 'retry', 'deferred');
CREATE INDEX messages_provider_idx ON messages (provider_id) WHERE provider_id IS NOT NULL;

-- Every attempt to deliver a message, and how it ended.
CREATE TABLE message_attempts (
    customer_id  bigint NOT NULL,
    message_id   bigint NOT NULL,
    attempt      integer NOT NULL,
    started_at   timestamptz NOT NULL DEFAULT now(),
    finished_at  timestamptz,
    outcome      text CHECK (outcome IN ('sent', 'retry', 'failed', 'ambiguous', 'skipped', 'deferred')),
    provider_id  text,
    error        text,
    PRIMARY KEY (customer_id, message_id, attempt),
    FOREIGN KEY (customer_id, message_id) REFERENCES messages (customer_id, id) ON DELETE CASCADE
);
