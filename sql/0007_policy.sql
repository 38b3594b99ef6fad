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

-- Is one more marketing message on p_channel to this customer over a cap? p_caps is a jsonb array
-- of {"channel": "email"|"sms"|"messenger"|"any", "max": N, "per": "1d"} (per: any interval
-- PostgreSQL reads: "1d", "7 days", "12h"). What counts: the customer's marketing messages that went
-- out (sent, delivered) or are going out (sending) within `per` before p_now, excluding p_message.
-- Returns NULL, or the reason "frequency_cap: N email per 1d" naming the cap that holds.
CREATE FUNCTION ng_frequency_capped(p_customer bigint, p_message bigint, p_channel text,
                                    p_caps jsonb, p_now timestamptz)
RETURNS text LANGUAGE plpgsql STABLE AS $$
DECLARE
    cap jsonb;
    n bigint;
BEGIN
    IF p_caps IS NULL OR jsonb_typeof(p_caps) <> 'array' THEN
        RETURN NULL;
    END IF;
    FOR cap IN SELECT * FROM jsonb_array_elements(p_caps) LOOP
        IF cap->>'channel' IS DISTINCT FROM 'any' AND cap->>'channel' IS DISTINCT FROM p_channel THEN
            CONTINUE;
        END IF;
        SELECT count(*) INTO n FROM messages m
         WHERE m.customer_id = p_customer AND m.id <> p_message AND m.purpose = 'marketing'
           AND m.status IN ('sent', 'delivered', 'sending')
           AND (cap->>'channel' = 'any' OR m.channel = p_channel)
           AND COALESCE(m.sent_at, m.updated_at) > p_now - (cap->>'per')::interval;
        IF n >= (cap->>'max')::bigint THEN
            RETURN format('frequency_cap: %s %s per %s', cap->>'max', cap->>'channel',
                          cap->>'per');
        END IF;
    END LOOP;
    RETURN NULL;
END $$;
