-- 0004_delivery.sql — what the dispatcher adds to the outbox: a history of every state change of a
-- message, a wake-up for dispatchers when a message is queued, the one policy decision made before
-- every send, and the index its claims use.

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
