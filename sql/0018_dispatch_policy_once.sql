-- 0018_dispatch_policy_once.sql — the claim's policy verdict without a query per message that
-- every message of the batch answers alike.
--
-- Measured on a claim of 512 (one session, 100,000 queued messages of 10 KB):
--  - ng_address_hash was declared IMMUTABLE over convert_to(), which is STABLE, so PostgreSQL
--    never inlined it: every suppression check ran it as a separate SQL function, with an
--    executor of its own (about 6 µs a message). Declared STABLE, which it is (it depends on the
--    database's encoding), it is inlined into the queries that call it. No index or generated
--    column uses it, so nothing depends on its being IMMUTABLE.
--  - ng_policy_verdict read policy_settings once per message. The claim now reads the row once
--    and hands it over; the ten-argument form reads it and calls the new one, for every other
--    caller.
--  - The customer's row drops its private columns with one `- text[]` instead of four `-`.
ALTER FUNCTION ng_address_hash(text) STABLE;

-- The verdict of 0011 with the settings as an argument; otherwise as it was.
CREATE FUNCTION ng_policy_verdict(p_customer bigint, p_message bigint, p_channel text,
                                  p_purpose text, p_address text, p_quiet text, p_on_cap text,
                                  p_timezone text, p_rank bigint, p_now timestamptz,
                                  p_settings jsonb)
RETURNS text LANGUAGE plpgsql STABLE SET enable_seqscan = on AS $$
DECLARE
    v text;
    s jsonb := p_settings;
    w jsonb;
    r jsonb;
    tz text;
    opens timestamptz;
    cap record;
BEGIN
    v := ng_delivery_policy(p_customer, p_channel, p_purpose, p_address);
    IF v = 'no_consent' AND p_channel = 'email' THEN
        v := COALESCE(ng_consent_pending_verdict(p_customer, p_now), v);
    END IF;
    IF v IS NOT NULL THEN
        RETURN v;
    END IF;
    IF s IS NULL THEN
        RETURN NULL;
    END IF;

    IF p_purpose = 'marketing' OR NOT COALESCE((s->>'transactional_exempt')::boolean, true) THEN
        w := s->'quiet_hours'->p_channel;
        -- A stricter rule for the recipient's region (longest matching phone prefix).
        IF p_channel = 'sms' AND p_address IS NOT NULL THEN
            SELECT x INTO r FROM jsonb_array_elements(COALESCE(s->'regions', '[]')) x
             WHERE starts_with(p_address, x->>'prefix') AND x->'quiet_hours' ? p_channel
             ORDER BY length(x->>'prefix') DESC LIMIT 1;
            IF r IS NOT NULL THEN
                w := r->'quiet_hours'->p_channel;
            END IF;
        END IF;
        IF w IS NOT NULL THEN
            tz := COALESCE(NULLIF(p_timezone, ''), s->>'timezone', 'UTC');
            IF NOT EXISTS (SELECT 1 FROM pg_timezone_names WHERE name = tz) THEN
                tz := COALESCE(s->>'timezone', 'UTC');
            END IF;
            opens := ng_quiet_hours_open(p_now, tz, (w->>'start')::time, (w->>'end')::time);
            IF opens IS NOT NULL THEN
                IF p_quiet = 'skip' THEN
                    RETURN format('quiet_hours: %s–%s %s', w->>'start', w->>'end', tz);
                END IF;
                RETURN format('defer:%s:quiet_hours until %s %s', ng_epoch_ms(opens), w->>'start', tz);
            END IF;
        END IF;
    END IF;

    IF p_purpose = 'marketing' AND jsonb_array_length(COALESCE(s->'caps', '[]')) > 0 THEN
        IF p_rank > 1 THEN
            RETURN format('defer:%s:another marketing message to this customer goes first',
                          ng_epoch_ms(p_now + interval '1 second'));
        END IF;
        cap := ng_frequency_cap(p_customer, p_message, p_channel, s->'caps', p_now);
        IF cap.reason IS NOT NULL THEN
            IF p_on_cap = 'drop' THEN
                RETURN cap.reason;
            END IF;
            RETURN format('defer:%s:%s', ng_epoch_ms(cap.frees_at), cap.reason);
        END IF;
    END IF;
    RETURN NULL;
END $$;

-- The verdict as 0007 and 0011 called it: the settings read here.
CREATE OR REPLACE FUNCTION ng_policy_verdict(p_customer bigint, p_message bigint, p_channel text,
                                  p_purpose text, p_address text, p_quiet text, p_on_cap text,
                                  p_timezone text, p_rank bigint, p_now timestamptz)
RETURNS text LANGUAGE sql STABLE AS $$
    SELECT ng_policy_verdict(p_customer, p_message, p_channel, p_purpose, p_address, p_quiet,
                             p_on_cap, p_timezone, p_rank, p_now,
                             (SELECT settings FROM policy_settings WHERE singleton))
$$;

-- The claim of 0007 reading policy_settings once for the whole batch (an uncorrelated sub-select,
-- evaluated once per statement; by its key, since sequential scans are off here). With 0013's
-- settings, and jit off: the scans this function turns off carry a huge cost in the planner's
-- eyes, which would otherwise make every claim compile itself (over 100 ms, seen with the
-- settings read through a disabled sequential scan).
CREATE OR REPLACE FUNCTION ng_dispatch_claim(p_owner text, p_now timestamptz, p_until timestamptz,
                                  p_limit integer, p_instance text, p_channel text,
                                  p_default boolean)
RETURNS TABLE (customer_id bigint, id bigint, attempt integer, channel text, template text,
               purpose text, data jsonb, address text, verdict text, customer jsonb)
LANGUAGE sql SET enable_hashjoin = off SET enable_mergejoin = off SET enable_seqscan = off
SET enable_bitmapscan = off SET jit = off AS $$
WITH c0 AS ((SELECT m.customer_id, m.id FROM messages m
              WHERE m.status IN ('queued', 'retry', 'deferred') AND m.next_attempt_at <= p_now
                AND (m.plugin_instance = p_instance
                     OR (m.plugin_instance IS NULL AND m.channel = p_channel AND p_default))
              ORDER BY m.next_attempt_at LIMIT p_limit * 4)
            UNION ALL
            (SELECT m.customer_id, m.id FROM messages m
              WHERE m.status = 'sending' AND m.lease_until < p_now
                AND (m.plugin_instance = p_instance
                     OR (m.plugin_instance IS NULL AND m.channel = p_channel AND p_default))
              LIMIT p_limit)),
c AS (SELECT x.* FROM c0 CROSS JOIN LATERAL (
        SELECT m.customer_id, m.id FROM messages m
         WHERE m.customer_id = c0.customer_id AND m.id = c0.id
           AND ((m.status IN ('queued', 'retry', 'deferred') AND m.next_attempt_at <= p_now)
                OR (m.status = 'sending' AND m.lease_until < p_now))
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
                            ELSE k.messenger_psid END AS addr) x
$$;
