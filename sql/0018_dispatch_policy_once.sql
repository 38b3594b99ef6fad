-- 0018_dispatch_policy_once.sql — the claim's policy verdict without a query per message that
-- every message of the batch answers alike.
--
-- Measured on a claim of 512 (one session, 100,000 queued messages of 10 KB):
--  - ng_address_hash was declared IMMUTABLE over convert_to(), which is STABLE, so PostgreSQL
--    never inlined it: every suppression check ran it as a separate SQL function, with an
--    executor of its own (about 6 µs a message). Declared STABLE, which it is (it depends on the
--    database's encoding), it is inlined into the queries that call it. No index or generated
--    column uses it, so nothing depends on its being IMMUTABLE.
--  - ng_policy_verdict read policy_settings once per message. The claim (redefined in 0019) reads
--    the row once per batch and hands it over; the ten-argument form reads it and calls the new
--    one, for every other caller.
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
