-- 0020_consent_and_lease_fixes.sql — three things the delivery path got wrong.
--
-- * A store's consent flag could undo the person's own unsubscribe. The unsubscribe link, a STOP
--   and a provider's opt-out record a withdrawal, but the link adds no suppression (it must not: a
--   suppression holds back receipts too), and ng_consent_may_grant only looked at suppressions.
--   Shopify keeps its own "subscribed" state, which nudge never changes, so the next checkout
--   webhook granted marketing consent again, and the mail resumed (or, with double opt-in, a
--   confirmation request went out). Now a grant that is not an explicit opt-in is refused while
--   the consent in force for that address is a withdrawal the person made through nudge.
-- * A message a reconcile pass held (status 'sending', last_error 'reconcile', no new attempt)
--   was taken by the ordinary claim once that daemon died and the lease ran out, and sent again:
--   the blind resend reconciliation exists to prevent. The ordinary claim now leaves those rows
--   alone and the reconcile pass takes them back.
-- * Expired leases came after the due messages in the claim's candidates, so behind a backlog of
--   a large campaign the messages a crashed daemon held waited until the backlog was gone. They
--   come first now (the lease index holds only rows in flight, and the scan stops at now).

CREATE OR REPLACE FUNCTION ng_consent_may_grant(p_channel text, p_address text,
                                                p_explicit boolean)
RETURNS boolean LANGUAGE plpgsql STABLE AS $$
DECLARE
    cid bigint;
BEGIN
    IF p_explicit OR p_address IS NULL THEN
        RETURN true;
    END IF;
    IF EXISTS (SELECT 1 FROM suppressions
                WHERE channel = p_channel
                  AND address_hash = sha256(convert_to(p_address, 'UTF8'))
                  AND (expires_at IS NULL OR expires_at > now())) THEN
        RETURN false;
    END IF;
    -- By each channel's own unique index.
    IF p_channel = 'email' THEN
        SELECT id INTO cid FROM customers WHERE email = lower(btrim(p_address));
    ELSIF p_channel = 'sms' THEN
        SELECT id INTO cid FROM customers WHERE phone = p_address;
    ELSE
        SELECT id INTO cid FROM customers WHERE messenger_psid = p_address;
    END IF;
    -- The person's own choices: the link in a message, a STOP, an opt-out the provider reported,
    -- a "this is spam" report. A store's flag (not explicit) never overrides them.
    RETURN cid IS NULL OR NOT EXISTS (
        SELECT 1 FROM consent_current k
         WHERE k.customer_id = cid AND k.channel = p_channel AND k.purpose = 'marketing'
           AND k.status = 'withdrawn'
           AND k.source IN ('unsubscribe_link', 'inbound_stop', 'provider_opt_out', 'complaint'));
END $$;

-- The claim of 0019, with the expired leases first and the reconcile pass's rows left to it.
CREATE OR REPLACE FUNCTION ng_dispatch_claim(p_owner text, p_now timestamptz, p_until timestamptz,
                                  p_limit integer, p_instance text, p_channel text,
                                  p_default boolean)
RETURNS TABLE (customer_id bigint, id bigint, attempt integer, channel text, template text,
               purpose text, data json, address text, verdict text, customer jsonb)
LANGUAGE plpgsql SET enable_hashjoin = off SET enable_mergejoin = off SET enable_seqscan = off
SET enable_bitmapscan = off SET jit = off SET plan_cache_mode = force_generic_plan AS $$
#variable_conflict use_column
BEGIN
RETURN QUERY
WITH c0 AS ((SELECT m.customer_id, m.id FROM messages m
              WHERE m.status = 'sending' AND m.lease_until < p_now
                AND m.last_error IS DISTINCT FROM 'reconcile'
                AND (m.plugin_instance = p_instance
                     OR (m.plugin_instance IS NULL AND m.channel = p_channel AND p_default))
              LIMIT p_limit)
            UNION ALL
            (SELECT m.customer_id, m.id FROM messages m
              WHERE m.status IN ('queued', 'retry', 'deferred') AND m.next_attempt_at <= p_now
                AND (m.plugin_instance = p_instance
                     OR (m.plugin_instance IS NULL AND m.channel = p_channel AND p_default))
              ORDER BY m.next_attempt_at LIMIT p_limit * 4)),
c AS (SELECT x.* FROM c0 CROSS JOIN LATERAL (
        SELECT m.customer_id, m.id FROM messages m
         WHERE m.customer_id = c0.customer_id AND m.id = c0.id
           AND ((m.status IN ('queued', 'retry', 'deferred') AND m.next_attempt_at <= p_now)
                OR (m.status = 'sending' AND m.lease_until < p_now
                    AND m.last_error IS DISTINCT FROM 'reconcile'))
           FOR UPDATE SKIP LOCKED) x
      LIMIT p_limit),
u AS (UPDATE messages m SET status = 'sending', attempt = m.attempt + 1, lease_owner = p_owner,
             lease_until = p_until, updated_at = p_now
        FROM c WHERE m.customer_id = c.customer_id AND m.id = c.id
      RETURNING m.customer_id, m.id, m.attempt, m.channel, m.template, m.purpose, m.data,
                m.priority, m.quiet_hours, m.on_cap),
o AS (UPDATE message_attempts t SET finished_at = p_now, outcome = 'ambiguous',
             error = 'the dispatcher holding it stopped before recording a result'
        FROM u WHERE t.customer_id = u.customer_id AND t.message_id = u.id
         AND t.attempt = u.attempt - 1 AND t.finished_at IS NULL),
a AS (INSERT INTO message_attempts (customer_id, message_id, attempt, started_at)
      SELECT u.customer_id, u.id, u.attempt, p_now FROM u),
r AS (SELECT u.*, row_number() OVER (PARTITION BY u.customer_id, u.purpose
                                     ORDER BY u.priority DESC, u.id) AS rank
        FROM u)
SELECT r.customer_id, r.id, r.attempt, r.channel, r.template, r.purpose, r.data, x.addr,
       ng_policy_verdict(r.customer_id, r.id, r.channel, r.purpose, x.addr, r.quiet_hours,
                         r.on_cap, k.timezone, r.rank, p_now,
                         (SELECT settings FROM policy_settings WHERE singleton)),
       to_jsonb(k) - ARRAY['erased_at', 'created_at', 'updated_at', 'birthday']
  FROM r JOIN customers k ON k.id = r.customer_id
 CROSS JOIN LATERAL (SELECT CASE r.channel WHEN 'email' THEN k.email WHEN 'sms' THEN k.phone
                            ELSE k.messenger_psid END AS addr) x;
END
$$;

-- The reconcile pass's claim of 0019, also taking back the messages a pass that died held (however
-- long ago: asking the provider once more is harmless, and nothing else would ever take them).
CREATE OR REPLACE FUNCTION ng_dispatch_claim_ambiguous(p_owner text, p_now timestamptz, p_until timestamptz,
                                            p_limit integer, p_instance text, p_channel text,
                                            p_default boolean, p_min_age interval,
                                            p_max_age interval)
RETURNS TABLE (customer_id bigint, id bigint, attempt integer, channel text, template text,
               purpose text, data json, address text, verdict text, customer jsonb)
LANGUAGE sql AS $$
WITH c AS (SELECT m.customer_id, m.id FROM messages m
            WHERE ((m.status = 'ambiguous' AND m.updated_at > p_now - p_max_age)
                   OR (m.status = 'sending' AND m.last_error = 'reconcile'
                       AND m.lease_until < p_now))
              AND m.updated_at <= p_now - p_min_age
              AND (m.plugin_instance = p_instance
                   OR (m.plugin_instance IS NULL AND m.channel = p_channel AND p_default))
            ORDER BY m.updated_at LIMIT p_limit FOR UPDATE SKIP LOCKED),
u AS (UPDATE messages m SET status = 'sending', lease_owner = p_owner, lease_until = p_until,
             last_error = 'reconcile', updated_at = p_now
        FROM c WHERE m.customer_id = c.customer_id AND m.id = c.id
      RETURNING m.customer_id, m.id, m.attempt, m.channel, m.template, m.purpose, m.data)
SELECT u.customer_id, u.id, u.attempt, u.channel, u.template, u.purpose, u.data, x.addr,
       NULL::text,
       to_jsonb(k) - ARRAY['erased_at', 'created_at', 'updated_at', 'birthday']
  FROM u JOIN customers k ON k.id = u.customer_id
 CROSS JOIN LATERAL (SELECT CASE u.channel WHEN 'email' THEN k.email WHEN 'sms' THEN k.phone
                            ELSE k.messenger_psid END AS addr) x
$$;
