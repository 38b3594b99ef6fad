-- 0008_reports.sql — what channel plugins report after a send (core/plugin_reports.c): provider
-- delivery statuses applied monotonically, consent given or withdrawn by keyword (STOP/START),
-- provider events as normalised intake events with Messenger PSIDs linked to customers; and the
-- dispatcher's claim of `ambiguous` messages for a reconcile (core/dispatch_reconcile.c).
--
-- Decided here (docs/delivery.md): a provider's `undelivered` is stored as messages.status
-- 'failed' with last_error "undelivered <code>: <provider status>", so the outbox keeps one set
-- of final states (sent, delivered, failed, skipped) that retention, privacy and the workflows
-- already know; message_events keeps the provider's word and code.

-- The rank of a messages.status for provider reports: a report may only move a message up.
-- sent 2; delivered and failed are final (3); anything else (queued, sending, retry, ambiguous)
-- is below sent (1): a provider that reports on it has the message.
CREATE FUNCTION ng_message_rank(p_status text) RETURNS integer LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE p_status WHEN 'sent' THEN 2 WHEN 'delivered' THEN 3 WHEN 'failed' THEN 3
                         WHEN 'skipped' THEN 3 ELSE 1 END
$$;

-- One provider status report, the monotonic rule in one place. The message is found by the
-- provider's id (messages_provider_idx), else by its key "nudge-<customer>-<message>" when the
-- provider echoed it (a message left ambiguous: the report proves the provider has it).
-- p_status: queued, sent, delivered, undelivered, failed. A report ranking at or below the
-- recorded status changes nothing (callbacks arrive out of order and twice); one carrying an
-- error code is still written to the history. p_suppress: the address is bad for good.
-- Returns 'applied', 'stale' or 'unknown' (no such message: the provider sent something nudge
-- does not know, or the message was deleted).
CREATE FUNCTION ng_report_status(p_provider_id text, p_key text, p_status text,
                                 p_provider_status text, p_code integer, p_suppress boolean,
                                 p_instance text)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    m      messages%ROWTYPE;
    want   text;
    detail text;
    kc     bigint;
    km     bigint;
BEGIN
    IF p_provider_id IS NOT NULL THEN
        SELECT * INTO m FROM messages WHERE provider_id = p_provider_id FOR UPDATE;
    END IF;
    IF m.id IS NULL AND p_key ~ '^nudge-[0-9]+-[0-9]+$' THEN
        kc := split_part(p_key, '-', 2)::bigint;
        km := split_part(p_key, '-', 3)::bigint;
        SELECT * INTO m FROM messages WHERE customer_id = kc AND id = km FOR UPDATE;
    END IF;
    IF m.id IS NULL THEN
        RETURN 'unknown';
    END IF;
    want := CASE p_status WHEN 'delivered' THEN 'delivered'
                          WHEN 'undelivered' THEN 'failed'
                          WHEN 'failed' THEN 'failed'
                          ELSE 'sent' END;
    detail := coalesce(p_provider_status, p_status)
              || CASE WHEN coalesce(p_code, 0) <> 0 THEN ' ' || p_code ELSE '' END
              || ' (' || coalesce(p_instance, 'provider') || ')';
    IF p_suppress AND m.status <> 'skipped' THEN
        INSERT INTO suppressions (channel, address, address_hash, reason, source, customer_id)
        SELECT m.channel, lower(btrim(a)), ng_address_hash(a), 'invalid_address',
               'provider:' || coalesce(p_instance, ''), m.customer_id
          FROM (SELECT CASE m.channel WHEN 'email' THEN k.email WHEN 'sms' THEN k.phone
                       ELSE k.messenger_psid END AS a FROM customers k
                 WHERE k.id = m.customer_id) x
         WHERE a IS NOT NULL
        ON CONFLICT DO NOTHING;
    END IF;
    IF ng_message_rank(want) <= ng_message_rank(m.status)
       OR (p_status = 'queued' AND m.status <> 'ambiguous') THEN
        IF coalesce(p_code, 0) <> 0 THEN
            INSERT INTO message_events (customer_id, message_id, attempt, status, previous, detail)
            VALUES (m.customer_id, m.id, m.attempt, m.status, m.status, 'stale report: ' || detail);
        END IF;
        RETURN 'stale';
    END IF;
    -- The provider has it although nudge never recorded the send's answer (still sending: the
    -- callback overtook the result; ambiguous: the answer was lost): the attempt was a send. The
    -- dispatcher's late result is fenced on 'sending' and then changes nothing.
    IF m.status IN ('sending', 'ambiguous') THEN
        UPDATE message_attempts SET outcome = 'sent', finished_at = coalesce(finished_at, now()),
               provider_id = coalesce(provider_id, p_provider_id)
         WHERE customer_id = m.customer_id AND message_id = m.id AND attempt = m.attempt;
    END IF;
    -- The history row is the trigger's (sql/0004): its detail is last_error, or the provider id
    -- for 'sent'.
    UPDATE messages
       SET status = want,
           provider_id = coalesce(provider_id, p_provider_id),
           last_error = CASE WHEN want = 'failed' THEN
                                 CASE WHEN p_status = 'undelivered' THEN 'undelivered ' ELSE 'failed ' END
                                 || coalesce(nullif(p_code, 0)::text || ': ', '')
                                 || coalesce(p_provider_status, p_status)
                             WHEN want = 'delivered' THEN detail
                             ELSE last_error END,
           sent_at = coalesce(sent_at, now()),
           lease_owner = NULL, lease_until = NULL,
           updated_at = now()
     WHERE customer_id = m.customer_id AND id = m.id;
    RETURN 'applied';
END $$;

-- A consent given or withdrawn at the provider (an SMS keyword): the customer whose address it is
-- on that channel gets a marketing consent row (source inbound_stop / inbound_start, evidence
-- the keyword, the provider's message id, the instance; provider_opt_out when the provider said
-- so without a keyword, e.g. Twilio's 21610 on a send). A withdrawal also cancels that
-- customer's queued marketing messages on the channel with the reason, like an unsubscribe link;
-- it is no suppression (a STOP is not a bounce; a later START must work). A grant is an explicit
-- opt-in (ng_consent_may_grant with p_explicit) and lifts the address's suppressions for opting
-- out or being unreachable (Twilio's 21610 on a send suppresses the number; START undoes it). A
-- redelivered keyword (same provider message id) records nothing new.
-- Returns {"status": "recorded"|"unchanged"|"unknown", "customer_id", "cancelled"}.
CREATE FUNCTION ng_report_consent(p_channel text, p_address text, p_granted boolean,
                                  p_keyword text, p_source text, p_provider_id text,
                                  p_instance text)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    cid  bigint;
    have text;
    want text := CASE WHEN p_granted THEN 'granted' ELSE 'withdrawn' END;
    src  text := CASE WHEN p_granted THEN 'inbound_start'
                      WHEN p_keyword IS NOT NULL THEN 'inbound_stop' ELSE 'provider_opt_out' END;
    n    integer := 0;
BEGIN
    SELECT id INTO cid FROM customers
     WHERE CASE p_channel WHEN 'sms' THEN phone = p_address
                          WHEN 'email' THEN email = lower(btrim(p_address))
                          ELSE messenger_psid = p_address END;
    IF cid IS NULL THEN
        RETURN jsonb_build_object('status', 'unknown');
    END IF;
    -- Two keywords from one sender can arrive at once ("STOP", then " Stop "): the second waits
    -- here for the first to commit, then sees what it recorded, so one change is one row.
    PERFORM 1 FROM customers WHERE id = cid FOR UPDATE;
    IF p_provider_id IS NOT NULL AND EXISTS (
        SELECT 1 FROM consents WHERE customer_id = cid AND channel = p_channel
           AND evidence->>'provider_id' = p_provider_id) THEN
        RETURN jsonb_build_object('status', 'unchanged', 'customer_id', cid);
    END IF;
    SELECT status INTO have FROM consent_current
     WHERE customer_id = cid AND channel = p_channel AND purpose = 'marketing';
    IF have IS DISTINCT FROM want
       AND (want = 'withdrawn' OR ng_consent_may_grant(p_channel, p_address, true)) THEN
        INSERT INTO consents (customer_id, channel, purpose, status, source, evidence)
        VALUES (cid, p_channel, 'marketing', want, src,
                jsonb_strip_nulls(jsonb_build_object('keyword', p_keyword, 'said', p_source,
                                  'provider_id', p_provider_id, 'instance', p_instance,
                                  'address', p_address)));
    ELSE
        RETURN jsonb_build_object('status', 'unchanged', 'customer_id', cid);
    END IF;
    IF want = 'withdrawn' THEN
        UPDATE messages SET status = 'skipped', updated_at = now(),
               last_error = 'no_consent: the recipient sent ' || coalesce(p_keyword, 'an opt-out')
         WHERE customer_id = cid AND channel = p_channel AND purpose = 'marketing'
           AND status IN ('queued', 'retry', 'deferred');
        GET DIAGNOSTICS n = ROW_COUNT;
    ELSE
        -- A number that texts START is reachable and asked for messages: what blocked it for
        -- opting out or for being unreachable goes; a complaint, a manual block or an erasure
        -- stays.
        DELETE FROM suppressions
         WHERE channel = p_channel
           AND reason IN ('unsubscribed', 'stop', 'hard_bounce', 'invalid_address')
           AND address_hash IN (ng_address_hash(p_address),
                                sha256(convert_to(p_address, 'UTF8')));
    END IF;
    RETURN jsonb_build_object('status', 'recorded', 'customer_id', cid, 'cancelled', n);
END $$;

-- An event a plugin reports (an inbound SMS, a Messenger message) as a normalised intake event.
-- p: {instance, name, channel, address, dedupe_key, properties, occurred_at, ref_customer_id,
-- customer_email, customer_phone}; ref_customer_id is the customer a verified ref names (the C
-- side checks the ref's signature). The customer is found by the address on its channel
-- (identity source "<channel>", external id the address), else linked: for Messenger the PSID is
-- written to the customer found by the ref, else by email, else by phone, unless another
-- customer holds it — except an anonymous one (no email, no phone) that an earlier unlinked
-- message created, whose PSID moves. Then ng_intake_accept (sql/0003) records the event.
-- Returns ng_intake_accept's answer plus "linked": true when a PSID was linked.
CREATE FUNCTION ng_report_event(p jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    ch     text := p->>'channel';
    addr   text := p->>'address';
    cid    bigint;
    holder customers%ROWTYPE;
    linked boolean := false;
    out    jsonb;
BEGIN
    IF ch = 'messenger' AND addr IS NOT NULL THEN
        cid := (p->>'ref_customer_id')::bigint;
        IF cid IS NULL AND p->>'customer_email' IS NOT NULL THEN
            SELECT id INTO cid FROM customers
             WHERE email = lower(btrim(p->>'customer_email'));
        END IF;
        IF cid IS NULL AND p->>'customer_phone' IS NOT NULL THEN
            SELECT id INTO cid FROM customers WHERE phone = btrim(p->>'customer_phone');
        END IF;
        IF cid IS NOT NULL
           AND NOT EXISTS (SELECT 1 FROM customers WHERE id = cid AND erased_at IS NULL) THEN
            cid := NULL;
        END IF;
        IF cid IS NOT NULL THEN
            SELECT * INTO holder FROM customers WHERE messenger_psid = addr;
            IF holder.id IS NOT NULL AND holder.id <> cid AND holder.email IS NULL
               AND holder.phone IS NULL THEN
                UPDATE customers SET messenger_psid = NULL, updated_at = now()
                 WHERE id = holder.id;
                DELETE FROM customer_identities
                 WHERE source = 'messenger' AND external_id = addr;
                holder := NULL;
            END IF;
            IF holder.id IS NULL THEN
                -- A signed ref proves who this is and replaces an older PSID; an email or phone
                -- typed into the chat only fills a PSID the customer lacks.
                UPDATE customers SET messenger_psid = addr, updated_at = now()
                 WHERE id = cid AND messenger_psid IS DISTINCT FROM addr
                   AND (messenger_psid IS NULL OR p ? 'ref_customer_id');
                linked := FOUND;
                INSERT INTO customer_identities (source, external_id, customer_id)
                VALUES ('messenger', addr, cid) ON CONFLICT DO NOTHING;
            END IF;
        END IF;
        -- Unlinked: the PSID alone is who this is (an anonymous customer on first contact).
        SELECT id INTO cid FROM customers WHERE messenger_psid = addr;
        IF cid IS NOT NULL THEN
            INSERT INTO customer_identities (source, external_id, customer_id)
            VALUES ('messenger', addr, cid) ON CONFLICT DO NOTHING;
        END IF;
    END IF;
    out := ng_intake_accept(jsonb_strip_nulls(jsonb_build_object(
        'source', coalesce(p->>'instance', ch),
        'identity_source', ch,
        'type', p->>'name',
        'dedupe_keys', CASE WHEN p->>'dedupe_key' IS NOT NULL
                            THEN jsonb_build_array(p->>'dedupe_key') END,
        'occurred_at', p->'occurred_at',
        'data', coalesce(p->'properties', '{}'::jsonb)
                || jsonb_build_object('channel', ch, 'address', addr),
        'customer', CASE ch WHEN 'sms' THEN jsonb_build_object('phone', addr)
                            WHEN 'email' THEN jsonb_build_object('email', lower(btrim(addr)))
                            ELSE jsonb_build_object('source_id', addr) END)));
    IF ch = 'messenger' AND out->>'status' = 'accepted' THEN
        -- A first contact made an anonymous customer: it is reachable at this PSID from now on.
        UPDATE customers SET messenger_psid = addr
         WHERE id = (out->>'customer_id')::bigint AND messenger_psid IS NULL
           AND NOT EXISTS (SELECT 1 FROM customers WHERE messenger_psid = addr);
    END IF;
    RETURN out || jsonb_build_object('linked', linked);
END $$;

-- The reconcile pass's claim (core/dispatch_reconcile.c): messages of one channel instance left
-- `ambiguous` for at least p_min_age and at most p_max_age ago, leased as 'sending' without a new
-- attempt — the reconcile's answer settles the ambiguous attempt itself (ng_dispatch_record
-- updates that attempt's row). The columns are ng_dispatch_claim's.
CREATE FUNCTION ng_dispatch_claim_ambiguous(p_owner text, p_now timestamptz, p_until timestamptz,
                                            p_limit integer, p_instance text, p_channel text,
                                            p_default boolean, p_min_age interval,
                                            p_max_age interval)
RETURNS TABLE (customer_id bigint, id bigint, attempt integer, channel text, template text,
               purpose text, data jsonb, address text, verdict text, customer jsonb)
LANGUAGE sql AS $$
WITH c AS (SELECT m.customer_id, m.id FROM messages m
            WHERE m.status = 'ambiguous'
              AND m.updated_at <= p_now - p_min_age AND m.updated_at > p_now - p_max_age
              AND (m.plugin_instance = p_instance
                   OR (m.plugin_instance IS NULL AND m.channel = p_channel AND p_default))
            ORDER BY m.updated_at LIMIT p_limit FOR UPDATE SKIP LOCKED),
u AS (UPDATE messages m SET status = 'sending', lease_owner = p_owner, lease_until = p_until,
             last_error = 'reconcile', updated_at = p_now
        FROM c WHERE m.customer_id = c.customer_id AND m.id = c.id
      RETURNING m.customer_id, m.id, m.attempt, m.channel, m.template, m.purpose, m.data)
SELECT u.customer_id, u.id, u.attempt, u.channel, u.template, u.purpose, u.data, x.addr,
       NULL::text,
       to_jsonb(k) - 'erased_at' - 'created_at' - 'updated_at' - 'birthday'
  FROM u JOIN customers k ON k.id = u.customer_id
 CROSS JOIN LATERAL (SELECT CASE u.channel WHEN 'email' THEN k.email WHEN 'sms' THEN k.phone
                            ELSE k.messenger_psid END AS addr) x
$$;
