-- 0019_dispatch_json_data_kept_plans.sql — the dispatcher's claim and record cost PostgreSQL less
-- per message: the data snapshot is stored as json, and both functions keep their plans.
--
-- * A message's data snapshot is stored as json (its text), not jsonb. Nothing in the database
--   looks inside it: the workflow engine writes it, the dispatcher reads it back whole to render
--   the message, and privacy export and erasure treat it as one value. As jsonb, every claim
--   turned each snapshot back into text (for a 5 KB snapshot about 12 µs of PostgreSQL's CPU per
--   message, half the cost of reading the row), and every insert built the binary form first.
--   json keeps the text as written and checks that it is JSON; -> and ->> still work on it, and
--   jsonb values written to it are cast on assignment. The two claims return the column as it is
--   stored, so they are dropped and made again (a function's result type cannot be replaced).
-- * ng_dispatch_claim and ng_dispatch_record were SQL functions, which PostgreSQL plans again at
--   every call: 0.7 ms per claim and 0.4 ms per record of 178 messages, 4 and 2 µs a message. As
--   PL/pgSQL with a generic plan each backend plans them once. The plan cannot depend on the
--   arguments anyway: with sequential scans, bitmap scans, hash and merge joins off, only the
--   index scans and nested loops they were written for remain.

ALTER TABLE messages ALTER COLUMN data DROP DEFAULT;
ALTER TABLE messages ALTER COLUMN data TYPE json USING data::json;
ALTER TABLE messages ALTER COLUMN data SET DEFAULT '{}'::json;

DROP FUNCTION ng_dispatch_claim(text, timestamptz, timestamptz, integer, text, text, boolean);
DROP FUNCTION ng_dispatch_claim_ambiguous(text, timestamptz, timestamptz, integer, text, text,
                                          boolean, interval, interval);

-- The claim of 0007, returning the data as stored, reading policy_settings once for the whole
-- batch for the verdict of 0018 (an uncorrelated sub-select, evaluated once per statement; by its
-- key, since sequential scans are off here), and dropping the customer's private columns with one
-- `- text[]`. With 0013's settings, and jit off: the scans this function turns off carry a huge
-- cost in the planner's eyes, which would otherwise make every claim compile itself (over 100 ms,
-- seen with the settings read through a disabled sequential scan).
CREATE FUNCTION ng_dispatch_claim(p_owner text, p_now timestamptz, p_until timestamptz,
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
                            ELSE k.messenger_psid END AS addr) x;
END
$$;

-- The reconcile pass's claim of 0008, returning the data as stored, and dropping the customer's
-- private columns with one `- text[]`.
CREATE FUNCTION ng_dispatch_claim_ambiguous(p_owner text, p_now timestamptz, p_until timestamptz,
                                            p_limit integer, p_instance text, p_channel text,
                                            p_default boolean, p_min_age interval,
                                            p_max_age interval)
RETURNS TABLE (customer_id bigint, id bigint, attempt integer, channel text, template text,
               purpose text, data json, address text, verdict text, customer jsonb)
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
       to_jsonb(k) - ARRAY['erased_at', 'created_at', 'updated_at', 'birthday']
  FROM u JOIN customers k ON k.id = u.customer_id
 CROSS JOIN LATERAL (SELECT CASE u.channel WHEN 'email' THEN k.email WHEN 'sms' THEN k.phone
                            ELSE k.messenger_psid END AS addr) x
$$;

-- The record of 0004, as PL/pgSQL with its plan kept; otherwise as it was.
CREATE OR REPLACE FUNCTION ng_dispatch_record(p_results jsonb, p_now timestamptz)
RETURNS TABLE (id bigint, customer_id bigint)
LANGUAGE plpgsql SET enable_hashjoin = off SET enable_mergejoin = off SET enable_seqscan = off
SET jit = off SET plan_cache_mode = force_generic_plan AS $$
#variable_conflict use_column
BEGIN
RETURN QUERY
WITH r AS (SELECT * FROM jsonb_to_recordset(p_results) AS r(cid bigint, mid bigint, att integer,
             status text, outcome text, provider_id text, error text, next_at timestamptz,
             channel text, sup_addr text, sup_reason text, segments integer, encoding text)),
m AS (UPDATE messages x SET status = r.status,
             provider_id = coalesce(r.provider_id, x.provider_id), last_error = r.error,
             next_attempt_at = coalesce(r.next_at, x.next_attempt_at),
             sent_at = CASE WHEN r.status = 'sent' THEN p_now ELSE x.sent_at END,
             segments = coalesce(r.segments, x.segments),
             encoding = coalesce(r.encoding, x.encoding),
             lease_owner = NULL, lease_until = NULL, updated_at = p_now
        FROM r WHERE x.customer_id = r.cid AND x.id = r.mid AND x.attempt = r.att
         AND x.status || '' = 'sending' -- not via the lease index: by primary key
      RETURNING x.id, x.customer_id, x.attempt, r.outcome, r.provider_id, r.error, r.channel,
                r.sup_addr, r.sup_reason),
a AS (UPDATE message_attempts y SET finished_at = p_now, outcome = m.outcome,
             provider_id = m.provider_id, error = m.error
        FROM m WHERE y.customer_id = m.customer_id AND y.message_id = m.id
         AND y.attempt = m.attempt),
s AS (INSERT INTO suppressions (channel, address, address_hash, reason, source, customer_id)
      SELECT m.channel, lower(btrim(m.sup_addr)), ng_address_hash(m.sup_addr), m.sup_reason,
             'dispatch', m.customer_id
        FROM m WHERE m.sup_addr IS NOT NULL
      ON CONFLICT DO NOTHING)
SELECT m.id, m.customer_id FROM m;
END
$$;
