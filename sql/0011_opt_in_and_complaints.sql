-- 0011_opt_in_and_complaints.sql — confirmed opt-in for email (policy.double_opt_in, docs/policy.md),
-- and complaints from feedback loops (at the end).
--
-- With policy_settings.settings->'double_opt_in'->>'email' true, an email marketing grant that is
-- not already confirmed (from a store webhook, the events API, an import) is recorded as pending
-- instead, and a transactional confirmation email is queued; its link (/c/<token>, core/confirm.c)
-- calls ng_consent_confirm, which records the grant. One trigger on consents does the first part,
-- so every path that grants goes through it. Marketing email to a customer whose consent in force
-- is pending is held (deferred) until it is confirmed or the hold runs out, then dropped with its
-- reason: that holds for a pending state a store reported too (Shopify's own double opt-in).
--
-- A grant counts as confirmed when its source is confirm_link or its evidence says
-- "confirmed": true (the store ran its own confirmation).

-- The customer's email marketing consent record in force (the latest), or NULL: the rule of the
-- consent_current view for one customer, by consents_current_idx.
CREATE FUNCTION ng_email_consent(p_customer bigint) RETURNS consents
LANGUAGE sql STABLE AS $$
    SELECT * FROM consents
     WHERE customer_id = p_customer AND channel = 'email' AND purpose = 'marketing'
     ORDER BY recorded_at DESC, id DESC LIMIT 1
$$;

CREATE FUNCTION ng_consent_double_opt_in() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    d jsonb;
    have text;
    tmpl text;
BEGIN
    IF NEW.channel <> 'email' OR NEW.purpose <> 'marketing' OR NEW.status <> 'granted' THEN
        RETURN NEW;
    END IF;
    SELECT settings->'double_opt_in' INTO d FROM policy_settings;
    have := (ng_email_consent(NEW.customer_id)).status;
    IF NEW.source = 'confirm_link' OR COALESCE((NEW.evidence->>'confirmed')::boolean, false)
       OR NOT COALESCE((d->>'email')::boolean, false) OR have = 'granted' THEN
        -- A grant in force: marketing email held for confirmation is due now.
        UPDATE messages SET next_attempt_at = now(), updated_at = now()
         WHERE customer_id = NEW.customer_id AND channel = 'email' AND purpose = 'marketing'
           AND status = 'deferred' AND last_error LIKE 'consent_pending%';
        RETURN NEW;
    END IF;
    tmpl := COALESCE(d->>'template', 'confirm_subscription');
    -- Already waiting, and asked less than a day ago: a store that repeats the opt-in with every
    -- checkout must not send a confirmation each time. Nothing new to record.
    IF have = 'pending' AND EXISTS (
           SELECT 1 FROM messages m
            WHERE m.customer_id = NEW.customer_id AND m.channel = 'email'
              AND m.workflow = 'double_opt_in' AND m.created_at > now() - interval '1 day') THEN
        RETURN NULL;
    END IF;
    NEW.status := 'pending';
    NEW.evidence := COALESCE(NEW.evidence, '{}'::jsonb)
                    || jsonb_build_object('double_opt_in', 'confirmation sent');
    INSERT INTO messages (customer_id, channel, template, purpose, workflow, data)
    VALUES (NEW.customer_id, 'email', tmpl, 'transactional', 'double_opt_in',
            jsonb_build_object('confirm_subscription', true));
    RETURN NEW;
END $$;

CREATE TRIGGER consents_double_opt_in BEFORE INSERT ON consents
    FOR EACH ROW EXECUTE FUNCTION ng_consent_double_opt_in();

-- The confirm link: 'confirmed' (the grant recorded now), 'already' (granted before), or
-- 'not_pending' (withdrawn since, or never asked for: the link no longer subscribes anyone).
CREATE FUNCTION ng_consent_confirm(p_customer bigint, p_evidence jsonb) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    k consents%ROWTYPE;
BEGIN
    -- Two clicks at once: the second waits here and then sees the first one's grant.
    PERFORM 1 FROM customers WHERE id = p_customer FOR UPDATE;
    k := ng_email_consent(p_customer);
    IF k.status = 'granted' THEN
        RETURN 'already';
    END IF;
    IF k.status IS DISTINCT FROM 'pending' THEN
        RETURN 'not_pending';
    END IF;
    INSERT INTO consents (customer_id, channel, purpose, status, source, evidence)
    VALUES (p_customer, 'email', 'marketing', 'granted', 'confirm_link',
            p_evidence || jsonb_build_object('confirmed', true, 'pending_consent', k.id));
    RETURN 'confirmed';
END $$;

-- Marketing email to a customer whose consent in force is pending waits for the confirmation: a
-- defer verdict until the hold (7 days unless configured) runs out from when it became pending,
-- then a skip reason. NULL when the consent in force is not pending. Against the dispatcher's
-- clock (p_now), as the other rules of the verdict are.
CREATE FUNCTION ng_consent_pending_verdict(p_customer bigint, p_now timestamptz) RETURNS text
LANGUAGE plpgsql STABLE AS $$
DECLARE
    pend consents := ng_email_consent(p_customer);
    d jsonb;
    hold interval;
BEGIN
    IF pend.status IS DISTINCT FROM 'pending' THEN
        RETURN NULL;
    END IF;
    SELECT settings->'double_opt_in' INTO d FROM policy_settings;
    hold := COALESCE((d->>'hold')::interval, interval '7 days');
    IF pend.recorded_at + hold > p_now THEN
        RETURN format('defer:%s:consent_pending: waiting for the subscriber to confirm',
                      ng_epoch_ms(pend.recorded_at + hold));
    END IF;
    RETURN format('consent_pending: not confirmed within %s',
                  COALESCE(d->>'hold_written', hold::text));
END $$;

-- The verdict of 0007 with one rule more (ng_consent_pending_verdict, for email without a grant);
-- the rest is 0007's as it was.
CREATE OR REPLACE FUNCTION ng_policy_verdict(p_customer bigint, p_message bigint, p_channel text,
                                  p_purpose text, p_address text, p_quiet text, p_on_cap text,
                                  p_timezone text, p_rank bigint, p_now timestamptz)
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
    IF v = 'no_consent' AND p_channel = 'email' THEN
        v := COALESCE(ng_consent_pending_verdict(p_customer, p_now), v);
    END IF;
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

-- A complaint from a mailbox provider's feedback loop (an RFC 5965 ARF report, read by
-- `nudge complaint`, core/cmd_complaint.c): the message it names (our Message-ID
-- nudge-<customer>-<message>@…) or, failing that, the reported recipient. The address is
-- suppressed with reason complaint, the customer's email marketing consent withdrawn (source
-- complaint), and their queued marketing email cancelled, in one transaction. Returns the
-- address, the customer (NULL when no customer has it) and how many messages were cancelled; no
-- row when neither the message nor an address is known.
CREATE FUNCTION ng_record_complaint(p_customer bigint, p_message bigint, p_address text,
                                    p_feedback_type text)
RETURNS TABLE (address text, customer_id bigint, cancelled bigint) LANGUAGE plpgsql AS $$
DECLARE
    addr text;
    cid bigint;
    n bigint := 0;
    have text;
BEGIN
    IF p_message IS NOT NULL THEN
        SELECT c.id, c.email INTO cid, addr FROM messages m JOIN customers c ON c.id = m.customer_id
         WHERE m.customer_id = p_customer AND m.id = p_message AND m.channel = 'email';
    END IF;
    IF addr IS NULL AND p_address IS NOT NULL AND btrim(p_address) <> '' THEN
        addr := lower(btrim(p_address));
        SELECT c.id INTO cid FROM customers c WHERE c.email = addr;
    END IF;
    IF addr IS NULL THEN
        RETURN;
    END IF;
    INSERT INTO suppressions AS s (channel, address, address_hash, reason, source, customer_id)
    VALUES ('email', addr, ng_address_hash(addr), 'complaint', 'feedback_loop', cid)
    ON CONFLICT (channel, address_hash) DO UPDATE SET reason = 'complaint', source = 'feedback_loop'
     WHERE s.reason <> 'complaint';
    IF cid IS NOT NULL THEN
        have := (ng_email_consent(cid)).status;
        IF have IS DISTINCT FROM 'withdrawn' AND have IS NOT NULL THEN
            INSERT INTO consents (customer_id, channel, purpose, status, source, evidence)
            VALUES (cid, 'email', 'marketing', 'withdrawn', 'complaint',
                    jsonb_strip_nulls(jsonb_build_object('feedback_type', p_feedback_type,
                                                         'message_id', p_message)));
        END IF;
        UPDATE messages m SET status = 'skipped', updated_at = now(),
               last_error = 'suppressed:complaint (feedback loop)'
         WHERE m.customer_id = cid AND m.channel = 'email' AND m.purpose = 'marketing'
           AND m.status IN ('queued', 'retry', 'deferred');
        GET DIAGNOSTICS n = ROW_COUNT;
    END IF;
    address := addr;
    customer_id := cid;
    cancelled := n;
    RETURN NEXT;
END $$;
