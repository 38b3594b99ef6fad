-- 0007_policy.sql — contact pressure: quiet hours in the recipient's time zone and frequency caps
-- across workflows and channels. Pure functions of their arguments and the outbox, so the
-- dispatcher's one policy decision (ng_delivery_policy) can call them and tests can probe them.

-- When may a message go out, given an allowed sending window [p_start, p_end) in local time of
-- p_tz? NULL when p_now is inside the window; otherwise the next moment the window opens. A window
-- whose end is before its start wraps midnight (e.g. 20:00–02:00). Local times that a DST change
-- skips resolve the way PostgreSQL resolves them (forward), so the answer always exists.
CREATE FUNCTION ng_quiet_hours_open(p_now timestamptz, p_tz text, p_start time, p_end time)
RETURNS timestamptz LANGUAGE plpgsql STABLE AS $$
DECLARE
    local_ts timestamp := p_now AT TIME ZONE p_tz;
    t time := local_ts::time;
    d date := local_ts::date;
BEGIN
    IF p_start = p_end THEN
        RETURN NULL;                      -- an empty quiet period: always open
    END IF;
    IF p_start < p_end THEN
        IF t >= p_start AND t < p_end THEN
            RETURN NULL;
        END IF;
        IF t < p_start THEN
            RETURN (d + p_start) AT TIME ZONE p_tz;
        END IF;
        RETURN ((d + 1) + p_start) AT TIME ZONE p_tz;
    END IF;
    -- Wrapping window: open from p_start to midnight and from midnight to p_end.
    IF t >= p_start OR t < p_end THEN
        RETURN NULL;
    END IF;
    RETURN (d + p_start) AT TIME ZONE p_tz;
END $$;


-- Per message, what the workflow asked for when a policy holds it back: quiet hours defer it to the
-- next window or skip it; a frequency cap defers it until the cap frees or drops it. The priority
-- column (0001) orders a customer's due marketing messages: the highest goes first.
ALTER TABLE messages
    ADD COLUMN quiet_hours text NOT NULL DEFAULT 'defer' CHECK (quiet_hours IN ('defer', 'skip')),
    ADD COLUMN on_cap text NOT NULL DEFAULT 'defer' CHECK (on_cap IN ('defer', 'drop'));

-- The contact-pressure settings in force, written by `nudge serve` from the `policy` keys of its
-- configuration at start and on SIGHUP (several daemons on one database should share one policy;
-- the one that started or reloaded last is in force):
--   {"timezone": "Europe/Berlin",
--    "quiet_hours": {"sms": {"start": "08:00", "end": "21:00"}},
--    "regions": [{"prefix": "+33", "quiet_hours": {"sms": {"start": "10:00", "end": "20:00"}}}],
--    "transactional_exempt": true,
--    "caps": [{"channel": "email", "max": 1, "per": "1d"}, ...]}
CREATE TABLE policy_settings (
    singleton   boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    settings    jsonb NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE FUNCTION ng_epoch_ms(p_t timestamptz) RETURNS bigint LANGUAGE sql IMMUTABLE AS $$
    SELECT (extract(epoch FROM p_t) * 1000)::bigint
$$;

-- The cap that holds a message, and when it frees: the max-th most recent counted message leaves
-- the window at its time + per. NULL reason: no cap holds.
CREATE FUNCTION ng_frequency_cap(p_customer bigint, p_message bigint, p_channel text,
                                 p_caps jsonb, p_now timestamptz,
                                 OUT reason text, OUT frees_at timestamptz)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    cap jsonb;
    per interval;
    lim bigint;
    t timestamptz;
BEGIN
    IF p_caps IS NULL OR jsonb_typeof(p_caps) <> 'array' THEN
        RETURN;
    END IF;
    FOR cap IN SELECT * FROM jsonb_array_elements(p_caps) LOOP
        IF cap->>'channel' IS DISTINCT FROM 'any' AND cap->>'channel' IS DISTINCT FROM p_channel THEN
            CONTINUE;
        END IF;
        per := (cap->>'per')::interval;
        lim := (cap->>'max')::bigint;
        SELECT ts INTO t FROM (
            SELECT COALESCE(m.sent_at, m.updated_at) AS ts FROM messages m
             WHERE m.customer_id = p_customer AND m.id <> p_message AND m.purpose = 'marketing'
               AND m.status IN ('sent', 'delivered', 'sending')
               AND (cap->>'channel' = 'any' OR m.channel = p_channel)
               AND COALESCE(m.sent_at, m.updated_at) > p_now - per
             ORDER BY 1 DESC OFFSET greatest(lim - 1, 0) LIMIT 1) x;
        IF lim <= 0 OR t IS NOT NULL THEN
            reason := format('frequency_cap: %s %s per %s', cap->>'max', cap->>'channel',
                             COALESCE(cap->>'written', cap->>'per'));
            frees_at := COALESCE(t + per, p_now + per);
            RETURN;
        END IF;
    END LOOP;
END $$;

-- The whole decision before a send, in one place: the address, suppression and consent rules of
-- ng_delivery_policy (0004), then quiet hours, then frequency caps. The verdict is NULL (send), a
-- reason (skip it), or "defer:<epoch ms>:<reason>" (hold it until then). p_rank is the message's
-- place among the same customer's marketing messages in one claim (highest priority first): only
-- the first may go in one pass, so a cap counts what went before it.
CREATE FUNCTION ng_policy_verdict(p_customer bigint, p_message bigint, p_channel text,
                                  p_purpose text, p_address text, p_quiet text, p_on_cap text,
                                  p_timezone text, p_rank bigint, p_now timestamptz)
-- The claim that calls this turns sequential scans off for its own plan; this function's small
-- lookups (the one-row settings table above all) would then be planned around a scan they must
-- make anyway, at every call: a 64-message claim took seconds instead of milliseconds.
RETURNS text LANGUAGE plpgsql STABLE SET enable_seqscan = on AS $$
DECLARE
    v text;
    s jsonb;
    w jsonb;
    r jsonb;
    tz text;
    opens timestamptz;
    cap record;
BEGIN
    v := ng_delivery_policy(p_customer, p_channel, p_purpose, p_address);
    IF v IS NOT NULL THEN
        RETURN v;
    END IF;
    SELECT settings INTO s FROM policy_settings;
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

-- The claim of 0004 with deferred messages due again, a customer's marketing messages in priority
-- order, and the full verdict.
CREATE OR REPLACE FUNCTION ng_dispatch_claim(p_owner text, p_now timestamptz, p_until timestamptz,
                                  p_limit integer, p_instance text, p_channel text,
                                  p_default boolean)
RETURNS TABLE (customer_id bigint, id bigint, attempt integer, channel text, template text,
               purpose text, data jsonb, address text, verdict text, customer jsonb)
LANGUAGE sql SET enable_hashjoin = off SET enable_mergejoin = off SET enable_seqscan = off AS $$
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
                         r.on_cap, k.timezone, r.rank, p_now),
       to_jsonb(k) - 'erased_at' - 'created_at' - 'updated_at' - 'birthday'
  FROM r JOIN customers k ON k.id = r.customer_id
 CROSS JOIN LATERAL (SELECT CASE r.channel WHEN 'email' THEN k.email WHEN 'sms' THEN k.phone
                            ELSE k.messenger_psid END AS addr) x
$$;
