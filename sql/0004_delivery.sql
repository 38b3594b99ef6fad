-- 0004_delivery.sql — what the dispatcher adds to the outbox: a history of every state change of a
-- message, a wake-up for dispatchers when a message is queued, the one policy decision made before
-- every send, and the index its claims use.

-- What the provider said a message became: SMS segments (what it bills) and encoding (GSM-7 or
-- UCS-2), from the plugin's send result.
ALTER TABLE messages ADD COLUMN segments integer, ADD COLUMN encoding text;

-- Every state change of a message, written by a trigger so no path (the dispatcher, an unsubscribe,
-- an operator's UPDATE) can change a status without leaving a row here.
CREATE TABLE message_events (
    customer_id  bigint NOT NULL,
    message_id   bigint NOT NULL,
    id           bigint GENERATED ALWAYS AS IDENTITY,
    at           timestamptz NOT NULL DEFAULT clock_timestamp(),
    attempt      integer NOT NULL,
    status       text NOT NULL,   -- the new status
    previous     text,            -- NULL for the insert
    detail       text,            -- the reason: provider reply, skip reason, lease owner …
    PRIMARY KEY (customer_id, message_id, id),
    FOREIGN KEY (customer_id, message_id) REFERENCES messages (customer_id, id) ON DELETE CASCADE
);

CREATE FUNCTION ng_message_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO message_events (customer_id, message_id, attempt, status, detail)
        VALUES (NEW.customer_id, NEW.id, NEW.attempt, NEW.status,
                coalesce(NEW.workflow, 'api') || ' ' || NEW.template);
        IF NEW.status IN ('queued', 'retry', 'deferred') THEN
            -- One notification per transaction: PostgreSQL folds identical payloads.
            PERFORM pg_notify('nudge_messages', 'queued');
        END IF;
    ELSIF NEW.status IS DISTINCT FROM OLD.status OR NEW.attempt IS DISTINCT FROM OLD.attempt THEN
        INSERT INTO message_events (customer_id, message_id, attempt, status, previous, detail)
        VALUES (NEW.customer_id, NEW.id, NEW.attempt, NEW.status, OLD.status,
                CASE WHEN NEW.status = 'sending' THEN NEW.lease_owner
                     WHEN NEW.status = 'sent' THEN NEW.provider_id
                     ELSE NEW.last_error END);
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER messages_history AFTER INSERT OR UPDATE ON messages
    FOR EACH ROW EXECUTE FUNCTION ng_message_changed();

-- The policy decision before every send, in one place so quiet hours, frequency caps and the
-- Messenger window can join it later. NULL: send. Otherwise the reason the message is skipped.
--   no_address    the customer has no address for the channel (or was erased)
--   suppressed:R  the address is on the suppression list for reason R
--   no_consent    marketing without granted marketing consent for the channel
-- Transactional messages need no marketing consent; nothing is ever sent to a suppressed address.
CREATE FUNCTION ng_delivery_policy(p_customer bigint, p_channel text, p_purpose text,
                                   p_address text)
RETURNS text LANGUAGE plpgsql STABLE AS $$
DECLARE
    r text;
BEGIN
    IF p_address IS NULL OR p_address = '' THEN
        RETURN 'no_address';
    END IF;
    SELECT s.reason INTO r FROM suppressions s
     WHERE s.channel = p_channel AND s.address_hash = ng_address_hash(p_address)
       AND (s.expires_at IS NULL OR s.expires_at > now());
    IF FOUND THEN
        RETURN 'suppressed:' || r;
    END IF;
    IF p_purpose = 'marketing' THEN
        PERFORM 1 FROM consent_current k
         WHERE k.customer_id = p_customer AND k.channel = p_channel
           AND k.purpose = 'marketing' AND k.status = 'granted';
        IF NOT FOUND THEN
            RETURN 'no_consent';
        END IF;
    END IF;
    RETURN NULL;
END $$;

-- The suppression list's key: sha256 of the normalised address (trimmed, lower-case).
CREATE FUNCTION ng_address_hash(p_address text) RETURNS bytea LANGUAGE sql IMMUTABLE AS $$
    SELECT sha256(convert_to(lower(btrim(p_address)), 'UTF8'))
$$;

-- Dispatcher claims: due messages by time, and expired leases of a crashed dispatcher.
CREATE INDEX messages_lease_idx ON messages (lease_until) WHERE status = 'sending';

-- A dispatcher's claim (core/dispatch.c): due rows for one channel instance — queued or retry whose
-- time has come, or sending whose lease ran out (a crashed or stalled dispatcher) — locked without
-- waiting for rows another node holds, leased to p_owner, the attempt bumped; an attempt row
-- opened, and the attempt the crashed holder left open closed as ambiguous. Returns each row with
-- the customer, the recipient address for the channel and the policy verdict.
-- Candidates come from the two partial indexes (four times as many as wanted, so that claims running
-- side by side, which skip each other's rows, still fill up), then are locked one by one until
-- enough are held; the SET clauses keep
-- the planner from hashing or scanning the whole table for a few hundred rows it reaches by
-- primary key (its estimates for the CTEs are far off).
CREATE FUNCTION ng_dispatch_claim(p_owner text, p_now timestamptz, p_until timestamptz,
                                  p_limit integer, p_instance text, p_channel text,
                                  p_default boolean)
RETURNS TABLE (customer_id bigint, id bigint, attempt integer, channel text, template text,
               purpose text, data jsonb, address text, verdict text, customer jsonb)
LANGUAGE sql SET enable_hashjoin = off SET enable_mergejoin = off SET enable_seqscan = off AS $$
WITH c0 AS ((SELECT m.customer_id, m.id FROM messages m
              WHERE m.status IN ('queued', 'retry') AND m.next_attempt_at <= p_now
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
           AND ((m.status IN ('queued', 'retry') AND m.next_attempt_at <= p_now)
                OR (m.status = 'sending' AND m.lease_until < p_now))
           FOR UPDATE SKIP LOCKED) x
      LIMIT p_limit),
u AS (UPDATE messages m SET status = 'sending', attempt = m.attempt + 1, lease_owner = p_owner,
             lease_until = p_until, updated_at = p_now
        FROM c WHERE m.customer_id = c.customer_id AND m.id = c.id
      RETURNING m.customer_id, m.id, m.attempt, m.channel, m.template, m.purpose, m.data),
o AS (UPDATE message_attempts t SET finished_at = p_now, outcome = 'ambiguous',
             error = 'the dispatcher holding it stopped before recording a result'
        FROM u WHERE t.customer_id = u.customer_id AND t.message_id = u.id
         AND t.attempt = u.attempt - 1 AND t.finished_at IS NULL),
a AS (INSERT INTO message_attempts (customer_id, message_id, attempt, started_at)
      SELECT u.customer_id, u.id, u.attempt, p_now FROM u)
SELECT u.customer_id, u.id, u.attempt, u.channel, u.template, u.purpose, u.data, x.addr,
       ng_delivery_policy(u.customer_id, u.channel, u.purpose, x.addr),
       to_jsonb(k) - 'erased_at' - 'created_at' - 'updated_at' - 'birthday'
  FROM u JOIN customers k ON k.id = u.customer_id
 CROSS JOIN LATERAL (SELECT CASE u.channel WHEN 'email' THEN k.email WHEN 'sms' THEN k.phone
                            ELSE k.messenger_psid END AS addr) x
$$;

-- A dispatcher's results (core/dispatch_result.c), many in one call: p_results is a JSON array of
-- {cid, mid, att, status, outcome, provider_id, error, next_at, channel, sup_addr, sup_reason}.
-- Each update is fenced by the attempt number and status 'sending', so the late result of a
-- dispatcher that lost its lease changes nothing. Returns the messages that were updated.
CREATE FUNCTION ng_dispatch_record(p_results jsonb, p_now timestamptz)
RETURNS TABLE (id bigint, customer_id bigint)
LANGUAGE sql SET enable_hashjoin = off SET enable_mergejoin = off SET enable_seqscan = off AS $$
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
SELECT m.id, m.customer_id FROM m
$$;
