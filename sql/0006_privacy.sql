-- 0006_privacy.sql — privacy operations on one customer, in the database so that the CLI
-- (`nudge customer export|forget`), the admin HTTP API and the tests all run the very same code:
--
--   ng_customer_export(id)   everything held about a customer, as one jsonb document
--   ng_customer_forget(id)   erase the customer's personal data from every table, cancel their
--                            instances and queued messages, and keep hashed suppressions so a
--                            re-import of the same address cannot bring marketing back
--   ng_retention_purge(...)  delete events and finished messages older than the retention periods
--
-- The address hash is sha256 over the normalised address's UTF-8 bytes (trimmed and lower-cased;
-- phones are already E.164): the same rule every writer of suppressions uses.

-- (The delivery migration defines the same function; OR REPLACE keeps one definition whichever
-- of the two a database saw first.)
CREATE OR REPLACE FUNCTION ng_address_hash(p_address text) RETURNS bytea
LANGUAGE sql IMMUTABLE AS $$
    SELECT sha256(convert_to(lower(btrim(p_address)), 'UTF8'))
$$;

CREATE FUNCTION ng_customer_export(p_customer bigint) RETURNS jsonb
LANGUAGE sql STABLE AS $$
SELECT CASE WHEN c.id IS NULL THEN NULL ELSE jsonb_build_object(
    'exported_at', now(),
    'customer', to_jsonb(c),
    'identities', COALESCE((SELECT jsonb_agg(jsonb_build_object('source', i.source,
                                'external_id', i.external_id, 'created_at', i.created_at)
                                ORDER BY i.created_at, i.source)
                              FROM customer_identities i WHERE i.customer_id = c.id), '[]'),
    'consent_history', COALESCE((SELECT jsonb_agg(jsonb_build_object('channel', k.channel,
                                'purpose', k.purpose, 'status', k.status, 'source', k.source,
                                'evidence', k.evidence, 'recorded_at', k.recorded_at)
                                ORDER BY k.recorded_at, k.id)
                              FROM consents k WHERE k.customer_id = c.id), '[]'),
    'consent_current', COALESCE((SELECT jsonb_agg(to_jsonb(cc) - 'customer_id'
                                ORDER BY cc.channel, cc.purpose)
                              FROM consent_current cc WHERE cc.customer_id = c.id), '[]'),
    'suppressions', COALESCE((SELECT jsonb_agg(jsonb_build_object('channel', s.channel,
                                'address', s.address, 'reason', s.reason, 'source', s.source,
                                'created_at', s.created_at, 'expires_at', s.expires_at)
                                ORDER BY s.created_at, s.id)
                              FROM suppressions s
                             WHERE s.customer_id = c.id
                                OR (s.channel = 'email' AND s.address_hash = ng_address_hash(c.email))
                                OR (s.channel = 'sms' AND s.address_hash = ng_address_hash(c.phone))
                                OR (s.channel = 'messenger'
                                    AND s.address_hash = ng_address_hash(c.messenger_psid))), '[]'),
    'events', COALESCE((SELECT jsonb_agg(jsonb_build_object('id', e.id, 'source', e.source,
                                'type', e.type, 'data', e.data, 'occurred_at', e.occurred_at,
                                'received_at', e.received_at)
                                ORDER BY e.occurred_at, e.id)
                              FROM events e WHERE e.customer_id = c.id), '[]'),
    'workflow_instances', COALESCE((SELECT jsonb_agg(jsonb_build_object('id', w.id,
                                'workflow', w.workflow, 'version', w.version, 'status', w.status,
                                'created_at', w.created_at, 'finished_at', w.finished_at,
                                'error', w.error)
                                ORDER BY w.created_at, w.id)
                              FROM instances w WHERE w.customer_id = c.id), '[]'),
    'messages', COALESCE((SELECT jsonb_agg(jsonb_build_object('id', m.id,
                                'workflow', m.workflow, 'channel', m.channel,
                                'template', m.template, 'purpose', m.purpose,
                                'status', m.status, 'data', m.data,
                                'provider_id', m.provider_id, 'last_error', m.last_error,
                                'created_at', m.created_at, 'sent_at', m.sent_at,
                                'attempts', COALESCE((SELECT jsonb_agg(jsonb_build_object(
                                        'attempt', a.attempt, 'started_at', a.started_at,
                                        'finished_at', a.finished_at, 'outcome', a.outcome,
                                        'provider_id', a.provider_id, 'error', a.error)
                                        ORDER BY a.attempt)
                                    FROM message_attempts a
                                   WHERE a.customer_id = m.customer_id AND a.message_id = m.id),
                                    '[]'))
                                ORDER BY m.created_at, m.id)
                              FROM messages m WHERE m.customer_id = c.id), '[]'))
END
  FROM (SELECT 1) one
  LEFT JOIN customers c ON c.id = p_customer
$$;

-- Erases one customer. Returns what it did as jsonb ({"customer_id", "erased_at",
-- "instances_cancelled", "messages_cancelled", "events_deleted", "suppressions"}), or NULL when no
-- such customer exists. Forgetting a forgotten customer changes nothing and says so.
--
-- What stays: the customers row itself (id, created_at, erased_at — no personal column), the
-- consent ledger's rows without their evidence (what was in force when, not who), instances and
-- messages as counts and states without their data, and one suppression per address holding only
-- its hash. What goes: every personal column, store ids, events (their payloads are personal),
-- the effect journal (results of customer reads and sends), message data and error texts.
CREATE FUNCTION ng_customer_forget(p_customer bigint, p_source text DEFAULT 'forget')
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    c customers%ROWTYPE;
    n_inst integer;
    n_msg integer;
    n_ev integer;
    n_sup integer := 0;
BEGIN
    SELECT * INTO c FROM customers WHERE id = p_customer FOR UPDATE;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    IF c.erased_at IS NOT NULL THEN
        RETURN jsonb_build_object('customer_id', c.id, 'erased_at', c.erased_at,
                                  'already_erased', true);
    END IF;

    -- Hashed suppressions first: from this statement on, no address of theirs can be messaged
    -- or re-consented by a store webhook, whatever happens to the rest of the row.
    WITH addr(channel, address) AS (
        VALUES ('email', c.email), ('sms', c.phone), ('messenger', c.messenger_psid)
    ), ins AS (
        INSERT INTO suppressions (channel, address, address_hash, reason, source, customer_id)
        SELECT channel, NULL, ng_address_hash(address), 'erased', p_source, NULL
          FROM addr WHERE address IS NOT NULL
        ON CONFLICT (channel, address_hash) DO UPDATE
            SET address = NULL, customer_id = NULL, reason = 'erased', expires_at = NULL
        RETURNING 1
    )
    SELECT count(*) INTO n_sup FROM ins;
    UPDATE suppressions SET address = NULL, customer_id = NULL WHERE customer_id = c.id;

    -- Live instances end now; a worker holding one finds its fence gone (status is no longer
    -- 'running') and its step is rolled back, so nothing more is sent.
    UPDATE instances
       SET status = 'cancelled', finished_at = now(), updated_at = now(), wake_at = NULL,
           waiting_for = NULL, lease_owner = NULL, lease_until = NULL,
           error = 'customer erased'
     WHERE customer_id = c.id AND status IN ('ready', 'running', 'waiting', 'parked');
    GET DIAGNOSTICS n_inst = ROW_COUNT;
    -- Keys and errors of finished instances may hold personal data (an email as key, a traceback).
    UPDATE instances SET key = 'erased:' || id,
           error = CASE WHEN error IS NULL THEN NULL ELSE 'customer erased' END
     WHERE customer_id = c.id;
    DELETE FROM effects WHERE customer_id = c.id;

    UPDATE messages
       SET status = 'skipped', last_error = 'customer erased', updated_at = now(),
           lease_owner = NULL, lease_until = NULL
     WHERE customer_id = c.id AND status IN ('queued', 'retry', 'deferred', 'sending', 'ambiguous');
    GET DIAGNOSTICS n_msg = ROW_COUNT;
    UPDATE messages SET data = '{}'::jsonb,
           last_error = CASE WHEN last_error IS NULL THEN NULL ELSE 'customer erased' END
     WHERE customer_id = c.id;
    UPDATE message_attempts SET error = CASE WHEN error IS NULL THEN NULL ELSE 'customer erased' END
     WHERE customer_id = c.id;
    -- The history's reasons quote provider replies ("550 <jane@…>: no such user").
    UPDATE message_events SET detail = 'customer erased'
     WHERE customer_id = c.id AND detail IS NOT NULL;

    DELETE FROM events WHERE customer_id = c.id;
    GET DIAGNOSTICS n_ev = ROW_COUNT;
    UPDATE consents SET evidence = '{}'::jsonb WHERE customer_id = c.id;
    DELETE FROM customer_identities WHERE customer_id = c.id;

    UPDATE customers
       SET email = NULL, phone = NULL, messenger_psid = NULL, first_name = NULL,
           last_name = NULL, timezone = NULL, locale = NULL, birthday = NULL,
           attributes = '{}'::jsonb, erased_at = now(), updated_at = now()
     WHERE id = c.id;

    PERFORM pg_notify('nudge_workflows', 'cancel');
    RETURN jsonb_build_object('customer_id', c.id, 'erased_at', now(),
                              'instances_cancelled', n_inst, 'messages_cancelled', n_msg,
                              'events_deleted', n_ev, 'suppressions', n_sup);
END $$;

-- Retention: events received and messages finished before the periods (in days; NULL or 0 keeps
-- them forever) are deleted. Events still waiting in the workflow inbox and messages not yet in a
-- final state are never purged. Returns {"events": n, "messages": m}.
CREATE FUNCTION ng_retention_purge(p_events_days integer, p_messages_days integer,
                                   p_now timestamptz DEFAULT now())
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    n_ev bigint := 0;
    n_msg bigint := 0;
BEGIN
    IF COALESCE(p_events_days, 0) > 0 THEN
        DELETE FROM events e
         WHERE e.received_at < p_now - make_interval(days => p_events_days)
           AND NOT EXISTS (SELECT 1 FROM workflow_inbox i
                            WHERE i.customer_id = e.customer_id AND i.event_id = e.id);
        GET DIAGNOSTICS n_ev = ROW_COUNT;
    END IF;
    IF COALESCE(p_messages_days, 0) > 0 THEN
        DELETE FROM messages m
         WHERE m.updated_at < p_now - make_interval(days => p_messages_days)
           AND m.status IN ('sent', 'delivered', 'failed', 'skipped');
        GET DIAGNOSTICS n_msg = ROW_COUNT;
    END IF;
    RETURN jsonb_build_object('events', n_ev, 'messages', n_msg);
END $$;
