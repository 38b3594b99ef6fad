-- 0003_intake.sql — durable event intake: one normalised event (docs/events.md) becomes a customer
-- (found or created), consent ledger rows and an event row in the caller's transaction, by one
-- function call; a batch of events from many concurrent HTTP requests is one statement, so one
-- round trip and one commit (group commit).
--
-- Failure handling (decided here, documented in docs/events.md): ng_intake_accept_batch takes no
-- savepoints, because a subtransaction per event in a batch of hundreds would overflow PostgreSQL's
-- per-backend subtransaction cache and slow every session. Duplicates are not failures (ON CONFLICT
-- DO NOTHING and a look-up first). When anything else fails — a concurrent request created the same
-- customer a moment earlier, a deadlock — the whole batch rolls back and the daemon re-submits each
-- request's events on its own (its own transaction), so one bad event fails only its own request.

-- What the events are about (a checkout token, an order id) and the store's topic.
ALTER TABLE events ADD COLUMN key text, ADD COLUMN topic text;

-- A delivery may carry several dedupe keys (WooCommerce: the delivery id and the resource state).
-- The first is events.dedupe_key; the others are here, so a second delivery matching any key of an
-- earlier event is recognised.
CREATE TABLE event_keys (
    source       text NOT NULL,
    dedupe_key   text NOT NULL,
    customer_id  bigint NOT NULL,
    event_id     bigint NOT NULL,
    PRIMARY KEY (source, dedupe_key),
    FOREIGN KEY (customer_id, event_id) REFERENCES events (customer_id, id) ON DELETE CASCADE
);
CREATE INDEX event_keys_event_idx ON event_keys (customer_id, event_id);

-- The one rule on granting marketing consent: an address in suppressions (unsubscribed, bounced,
-- erased…) stays suppressed, and only a new explicit opt-in recorded as such (p_explicit) may lift
-- it. Store flags such as buyer_accepts_marketing are never explicit. The consent work extends this
-- function; every grant goes through it.
CREATE FUNCTION ng_consent_may_grant(p_channel text, p_address text, p_explicit boolean)
RETURNS boolean LANGUAGE sql STABLE AS $$
    SELECT p_explicit OR p_address IS NULL OR NOT EXISTS (
        SELECT 1 FROM suppressions
         WHERE channel = p_channel
           AND address_hash = sha256(convert_to(p_address, 'UTF8'))
           AND (expires_at IS NULL OR expires_at > now()))
$$;

-- Finds or creates the customer of a normalised event: by the store's id (in the identity source,
-- e.g. "shopify:my-shop.myshopify.com"), then by email, then by phone. A found customer gets what it
-- lacked (an address is never moved from one customer to another; names and locale follow the
-- newest event). An event without a customer (a cart) gets an anonymous customer per key.
CREATE FUNCTION ng_intake_customer(p_ev jsonb) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    c    jsonb := coalesce(p_ev->'customer', '{}'::jsonb);
    src  text := coalesce(p_ev->>'identity_source', p_ev->>'source');
    sid  text := c->>'source_id';
    em   text := c->>'email';
    ph   text := c->>'phone';
    cid  bigint;
    won  bigint;
    made boolean := false;
    cur  customers%ROWTYPE;
BEGIN
    IF sid IS NULL AND em IS NULL AND ph IS NULL THEN
        src := src || ':anonymous';
        sid := coalesce(p_ev->>'key', p_ev->'dedupe_keys'->>0, gen_random_uuid()::text);
    END IF;
    IF sid IS NOT NULL THEN
        SELECT customer_id INTO cid FROM customer_identities
         WHERE source = src AND external_id = sid;
    END IF;
    IF cid IS NULL AND em IS NOT NULL THEN
        SELECT id INTO cid FROM customers WHERE email = em;
    END IF;
    IF cid IS NULL AND ph IS NOT NULL THEN
        SELECT id INTO cid FROM customers WHERE phone = ph;
    END IF;
    IF cid IS NULL THEN
        INSERT INTO customers (email, phone, first_name, last_name, locale, timezone, attributes)
        VALUES (em, ph, c->>'first_name', c->>'last_name', c->>'locale', c->>'timezone',
                coalesce(c->'properties', '{}'::jsonb))
        RETURNING id INTO cid;
        made := true;
    ELSE
        SELECT * INTO cur FROM customers WHERE id = cid;
        IF cur.erased_at IS NULL THEN
            IF cur.email IS NOT NULL OR em IS NULL
               OR EXISTS (SELECT 1 FROM customers WHERE email = em) THEN
                em := cur.email;
            END IF;
            IF cur.phone IS NOT NULL OR ph IS NULL
               OR EXISTS (SELECT 1 FROM customers WHERE phone = ph) THEN
                ph := cur.phone;
            END IF;
            -- Only a real change writes the row: many events of one customer must not queue on
            -- its row lock.
            UPDATE customers
               SET email = em, phone = ph,
                   first_name = coalesce(c->>'first_name', cur.first_name),
                   last_name = coalesce(c->>'last_name', cur.last_name),
                   locale = coalesce(c->>'locale', cur.locale),
                   timezone = coalesce(c->>'timezone', cur.timezone),
                   attributes = cur.attributes || coalesce(c->'properties', '{}'::jsonb),
                   updated_at = now()
             WHERE id = cid
               AND (email, phone, first_name, last_name, locale, timezone, attributes)
                   IS DISTINCT FROM
                   (em, ph, coalesce(c->>'first_name', cur.first_name),
                    coalesce(c->>'last_name', cur.last_name), coalesce(c->>'locale', cur.locale),
                    coalesce(c->>'timezone', cur.timezone),
                    cur.attributes || coalesce(c->'properties', '{}'::jsonb));
        END IF;
    END IF;
    IF sid IS NOT NULL THEN
        INSERT INTO customer_identities (source, external_id, customer_id)
        VALUES (src, sid, cid) ON CONFLICT DO NOTHING;
        IF NOT FOUND THEN
            -- A concurrent transaction recorded this id first (ON CONFLICT waited for it to
            -- commit): its customer is the one, and the row made here a moment ago goes.
            SELECT customer_id INTO won FROM customer_identities
             WHERE source = src AND external_id = sid;
            IF won IS DISTINCT FROM cid THEN
                IF made THEN
                    DELETE FROM customers WHERE id = cid;
                END IF;
                cid := won;
            END IF;
        END IF;
    END IF;
    RETURN cid;
END $$;

-- Records the consent an event carries, channel by channel, where it changes what is in force:
-- subscribed → granted (unless ng_consent_may_grant refuses), unsubscribed → withdrawn and the
-- address suppressed, pending → pending; not_subscribed records nothing. Returns the channels
-- whose grant was refused, for the event's warnings.
CREATE FUNCTION ng_intake_consent(p_customer bigint, p_ev jsonb) RETURNS text[]
LANGUAGE plpgsql AS $$
DECLARE
    ch       text;
    v        jsonb;
    want     text;
    have     text;
    addr     text;
    refused  text[] := '{}';
    cust     customers%ROWTYPE;
BEGIN
    IF p_ev->'consent' IS NULL OR jsonb_typeof(p_ev->'consent') <> 'object' THEN
        RETURN refused;
    END IF;
    SELECT * INTO cust FROM customers WHERE id = p_customer;
    FOR ch, v IN SELECT key, value FROM jsonb_each(p_ev->'consent') LOOP
        want := CASE v->>'state' WHEN 'subscribed' THEN 'granted'
                                 WHEN 'unsubscribed' THEN 'withdrawn'
                                 WHEN 'pending' THEN 'pending' END;
        CONTINUE WHEN want IS NULL OR ch NOT IN ('email', 'sms', 'messenger');
        SELECT status INTO have FROM consents
         WHERE customer_id = p_customer AND channel = ch AND purpose = 'marketing'
         ORDER BY recorded_at DESC, id DESC LIMIT 1;
        CONTINUE WHEN have IS NOT DISTINCT FROM want;
        -- Nothing in force is the same as withdrawn: an unsubscribe then only suppresses.
        addr := CASE ch WHEN 'email' THEN cust.email WHEN 'sms' THEN cust.phone
                        ELSE cust.messenger_psid END;
        IF want <> 'withdrawn'
           AND NOT ng_consent_may_grant(ch, addr, COALESCE((v->>'explicit')::boolean, false)) THEN
            refused := refused || ch;
            CONTINUE;
        END IF;
        -- A new explicit opt-in lifts what the person's own choice put there (an unsubscribe, a
        -- STOP, an erasure); a bounced address stays suppressed, whatever anyone ticked.
        IF want = 'granted' AND COALESCE((v->>'explicit')::boolean, false) AND addr IS NOT NULL THEN
            DELETE FROM suppressions
             WHERE channel = ch AND address_hash = sha256(convert_to(addr, 'UTF8'))
               AND reason IN ('unsubscribed', 'stop', 'erased');
        END IF;
        IF NOT (want = 'withdrawn' AND have IS NULL) THEN
            INSERT INTO consents (customer_id, channel, purpose, status, source, evidence)
            VALUES (p_customer, ch, 'marketing', want,
                    coalesce(v->>'source', p_ev->>'source'),
                    jsonb_strip_nulls(jsonb_build_object(
                        'event_source', p_ev->>'source', 'topic', p_ev->>'topic',
                        'level', v->'level', 'updated_at', v->'updated_at',
                        'explicit', v->'explicit', 'dedupe_key', p_ev->'dedupe_keys'->0))
                    || COALESCE(v->'evidence', '{}'::jsonb));
        END IF;
        IF want = 'withdrawn' AND addr IS NOT NULL THEN
            INSERT INTO suppressions (channel, address, address_hash, reason, source, customer_id)
            VALUES (ch, addr, sha256(convert_to(addr, 'UTF8')), 'unsubscribed',
                    coalesce(v->>'source', p_ev->>'source'), p_customer)
            ON CONFLICT (channel, address_hash) DO NOTHING;
        END IF;
    END LOOP;
    RETURN refused;
END $$;

-- One normalised event: duplicate check, customer, consent, the event row (whose trigger queues
-- it for the workflows), its extra dedupe keys. Returns {"status": "accepted", "event_id",
-- "customer_id"[, "consent_refused"]} or {"status": "duplicate"}. Raises on anything else; a
-- race with a concurrent identical delivery raises SQLSTATE NGIN1, which the daemon reads as
-- "duplicate" when it retries the event on its own.
CREATE FUNCTION ng_intake_accept(p_ev jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    src      text := p_ev->>'source';
    keys     text[];
    k1       text;
    cid      bigint;
    eid      bigint;
    refused  text[];
    n        integer;
    out      jsonb;
BEGIN
    SELECT coalesce(array_agg(k), '{}') INTO keys
      FROM jsonb_array_elements_text(coalesce(p_ev->'dedupe_keys', '[]'::jsonb)) AS k;
    IF cardinality(keys) > 0 THEN
        IF EXISTS (SELECT 1 FROM events WHERE source = src AND dedupe_key = ANY (keys))
           OR EXISTS (SELECT 1 FROM event_keys WHERE source = src AND dedupe_key = ANY (keys)) THEN
            RETURN '{"status": "duplicate"}'::jsonb;
        END IF;
        k1 := keys[1];
    ELSE
        k1 := 'received:' || gen_random_uuid()::text;
    END IF;

    cid := ng_intake_customer(p_ev);
    refused := ng_intake_consent(cid, p_ev);

    INSERT INTO events (customer_id, source, delivery_id, dedupe_key, type, key, topic, data,
                        occurred_at)
    VALUES (cid, src, p_ev->>'delivery_id', k1, p_ev->>'type', p_ev->>'key', p_ev->>'topic',
            coalesce(p_ev->'data', '{}'::jsonb),
            coalesce((p_ev->>'occurred_at')::timestamptz, now()))
    ON CONFLICT (source, dedupe_key) DO NOTHING
    RETURNING id INTO eid;
    IF eid IS NULL THEN
        RAISE EXCEPTION 'event % % was recorded concurrently', src, k1 USING ERRCODE = 'NGIN1';
    END IF;
    IF cardinality(keys) > 1 THEN
        INSERT INTO event_keys (source, dedupe_key, customer_id, event_id)
        SELECT src, k, cid, eid FROM unnest(keys[2:]) AS k
        ON CONFLICT DO NOTHING;
        GET DIAGNOSTICS n = ROW_COUNT;
        IF n < cardinality(keys) - 1 THEN
            RAISE EXCEPTION 'a dedupe key of % % was recorded concurrently', src, k1
                USING ERRCODE = 'NGIN1';
        END IF;
    END IF;
    out := jsonb_build_object('status', 'accepted', 'event_id', eid, 'customer_id', cid);
    IF cardinality(refused) > 0 THEN
        out := out || jsonb_build_object('consent_refused', to_jsonb(refused));
    END IF;
    RETURN out;
END $$;

-- A batch: one result row per event, in order. One statement, so one transaction: all commit or
-- none (see the top of this file for what the daemon does then).
CREATE FUNCTION ng_intake_accept_batch(p_events jsonb) RETURNS SETOF jsonb LANGUAGE plpgsql AS $$
DECLARE
    i integer;
BEGIN
    FOR i IN 0 .. jsonb_array_length(p_events) - 1 LOOP
        RETURN NEXT ng_intake_accept(p_events->i);
    END LOOP;
END $$;
