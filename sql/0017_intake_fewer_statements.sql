-- 0017_intake_fewer_statements.sql — the intake's functions of 0003 and 0012 with fewer statements
-- per event.
--
-- Under load PostgreSQL spent about a sixth of its time starting executors: every SQL statement a
-- PL/pgSQL function runs initialises its plan again, and the intake ran a dozen per event. The
-- behaviour is that of 0003 and 0012; what changes:
--   * the dedupe keys are read with expressions (PL/pgSQL evaluates those without an executor)
--     instead of a SELECT over jsonb_array_elements_text;
--   * a customer found by the store's id comes with its row from one join, not two look-ups;
--   * the consent of an event reads the customer's row only for a channel whose consent changes
--     (a checkout's "not subscribed here" changes nothing and read it for nothing), and finds its
--     channels with expressions, not a SELECT over jsonb_each;
--   * whether another customer holds an email or phone is looked up only when the found customer
--     has none and the event brings one (a condition with a sub-query costs a statement even when
--     the OR before it already decided).

-- As in 0012, with the customer's row read with its identity.
CREATE OR REPLACE FUNCTION ng_intake_customer(p_ev jsonb) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    c      jsonb := coalesce(p_ev->'customer', '{}'::jsonb);
    src    text := coalesce(p_ev->>'identity_source', p_ev->>'source');
    sid    text := c->>'source_id';
    em     text := c->>'email';
    ph     text := c->>'phone';
    cid    bigint;
    won    bigint;
    made   boolean := false;
    by_sid boolean := false;
    cur    customers%ROWTYPE;
BEGIN
    IF sid IS NULL AND em IS NULL AND ph IS NULL THEN
        src := src || ':anonymous';
        sid := coalesce(p_ev->>'key', p_ev->'dedupe_keys'->>0, gen_random_uuid()::text);
    END IF;
    IF sid IS NOT NULL THEN
        SELECT c.* INTO cur FROM customer_identities i JOIN customers c ON c.id = i.customer_id
         WHERE i.source = src AND i.external_id = sid;
        by_sid := FOUND;
        cid := cur.id;
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
        IF NOT by_sid THEN
            SELECT * INTO cur FROM customers WHERE id = cid;
        END IF;
        IF cur.erased_at IS NULL THEN
            -- The look-up only when it decides: a condition with a sub-query is a statement,
            -- one without is an expression.
            IF cur.email IS NOT NULL OR em IS NULL THEN
                em := cur.email;
            ELSIF EXISTS (SELECT 1 FROM customers WHERE email = em) THEN
                em := cur.email;
            END IF;
            IF cur.phone IS NOT NULL OR ph IS NULL THEN
                ph := cur.phone;
            ELSIF EXISTS (SELECT 1 FROM customers WHERE phone = ph) THEN
                ph := cur.phone;
            END IF;
            -- Only a real change writes the row: many events of one customer must not queue on
            -- its row lock.
            IF (cur.email, cur.phone, cur.first_name, cur.last_name, cur.locale, cur.timezone,
                cur.attributes)
               IS DISTINCT FROM
               (em, ph, coalesce(c->>'first_name', cur.first_name),
                coalesce(c->>'last_name', cur.last_name), coalesce(c->>'locale', cur.locale),
                coalesce(c->>'timezone', cur.timezone),
                cur.attributes || coalesce(c->'properties', '{}'::jsonb)) THEN
                UPDATE customers
                   SET email = em, phone = ph,
                       first_name = coalesce(c->>'first_name', cur.first_name),
                       last_name = coalesce(c->>'last_name', cur.last_name),
                       locale = coalesce(c->>'locale', cur.locale),
                       timezone = coalesce(c->>'timezone', cur.timezone),
                       attributes = cur.attributes || coalesce(c->'properties', '{}'::jsonb),
                       updated_at = now()
                 WHERE id = cid;
            END IF;
        END IF;
    END IF;
    IF sid IS NOT NULL AND NOT by_sid THEN
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

-- As in 0012, with the keys read by expressions.
CREATE OR REPLACE FUNCTION ng_intake_accept(p_ev jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    src      text := p_ev->>'source';
    keys     text[];
    k1       text;
    dk       text;
    cid      bigint;
    eid      bigint;
    refused  text[];
    n        integer;
    out      jsonb;
BEGIN
    keys := '{}';
    FOR i IN 0 .. coalesce(jsonb_array_length(p_ev->'dedupe_keys'), 0) - 1 LOOP
        keys := keys || (p_ev->'dedupe_keys'->>i);
    END LOOP;
    IF cardinality(keys) > 0 THEN
        -- One equality look-up per key: with "dedupe_key = ANY (keys)" a plan cached while the
        -- table was small could use only the source column of the index and read every event of
        -- the source (5,000 index entries per event after a few seconds of load).
        FOREACH dk IN ARRAY keys LOOP
            IF EXISTS (SELECT 1 FROM events WHERE source = src AND dedupe_key = dk)
               OR EXISTS (SELECT 1 FROM event_keys WHERE source = src AND dedupe_key = dk) THEN
                RETURN '{"status": "duplicate"}'::jsonb;
            END IF;
        END LOOP;
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

-- As in 0003, with the channels read by expressions and the customer's row only when a
-- channel's consent changes.
CREATE OR REPLACE FUNCTION ng_intake_consent(p_customer bigint, p_ev jsonb) RETURNS text[]
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
    -- The channels in jsonb_each's order (shorter keys first), read with expressions.
    FOREACH ch IN ARRAY ARRAY['sms', 'email', 'messenger'] LOOP
        v := p_ev->'consent'->ch;
        want := CASE v->>'state' WHEN 'subscribed' THEN 'granted'
                                 WHEN 'unsubscribed' THEN 'withdrawn'
                                 WHEN 'pending' THEN 'pending' END;
        CONTINUE WHEN want IS NULL;
        SELECT status INTO have FROM consents
         WHERE customer_id = p_customer AND channel = ch AND purpose = 'marketing'
         ORDER BY recorded_at DESC, id DESC LIMIT 1;
        CONTINUE WHEN have IS NOT DISTINCT FROM want;
        IF cust.id IS NULL THEN
            SELECT * INTO cust FROM customers WHERE id = p_customer;
        END IF;
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
