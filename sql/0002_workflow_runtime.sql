-- 0002_workflow_runtime.sql — what the durable workflow runtime adds to the foundation: the
-- trigger inbox (every accepted event is queued for the workflow scheduler in the same transaction
-- that inserts it), the fence that rejects a stale lease holder's write, and the indexes the
-- scheduler's claims use.

-- One row per accepted event not yet handled by the workflow triggers. The trigger below fills it
-- in the intake's own transaction, so an event can never be committed without being queued.
-- A scheduler claims rows with FOR UPDATE SKIP LOCKED and a lease; a crashed holder's lease runs out
-- and another scheduler takes the row over.
CREATE TABLE workflow_inbox (
    customer_id  bigint NOT NULL,
    event_id     bigint NOT NULL,
    lease_owner  text,
    lease_until  timestamptz,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (customer_id, event_id),
    FOREIGN KEY (customer_id, event_id) REFERENCES events (customer_id, id) ON DELETE CASCADE
);
CREATE INDEX workflow_inbox_order_idx ON workflow_inbox (event_id);

CREATE FUNCTION ng_wf_event_queued() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO workflow_inbox (customer_id, event_id) VALUES (NEW.customer_id, NEW.id);
    -- One notification per transaction is enough: PostgreSQL folds identical payloads.
    PERFORM pg_notify('nudge_workflows', 'inbox');
    RETURN NULL;
END $$;

CREATE TRIGGER events_queue_for_workflows AFTER INSERT ON events
    FOR EACH ROW EXECUTE FUNCTION ng_wf_event_queued();

-- The fence: the first statement of every write of a step. It raises (and so rolls the whole step
-- back) unless the instance is still running under this very lease attempt, so a worker whose lease
-- expired and was taken over can never record a step twice.
CREATE FUNCTION ng_wf_fence(p_customer bigint, p_instance bigint, p_attempt integer)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1 FROM instances
     WHERE customer_id = p_customer AND id = p_instance
       AND attempt = p_attempt AND status = 'running'
       FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'stale lease on instance %/% (attempt %)', p_customer, p_instance, p_attempt
            USING ERRCODE = 'NGWF1';
    END IF;
END $$;

-- The same for an inbox row: handled at most once, by its current holder.
CREATE FUNCTION ng_wf_inbox_done(p_customer bigint, p_event bigint, p_owner text)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM workflow_inbox
     WHERE customer_id = p_customer AND event_id = p_event AND lease_owner = p_owner;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'inbox event %/% is no longer held by %', p_customer, p_event, p_owner
            USING ERRCODE = 'NGWF2';
    END IF;
END $$;

-- Running instances by lease expiry, for recovering the work of a crashed scheduler.
CREATE INDEX instances_lease_idx ON instances (lease_until) WHERE status = 'running';
-- Re-entry rules look up a customer's earlier instances of a workflow.
CREATE INDEX instances_customer_workflow_idx ON instances (customer_id, workflow, created_at DESC);
