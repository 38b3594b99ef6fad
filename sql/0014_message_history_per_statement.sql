-- 0014_message_history_per_statement.sql — the message history of 0004, written once per
-- statement instead of once per row.
--
-- The dispatcher claims and records hundreds of messages per statement. With the row trigger of
-- 0004 each of them cost a PL/pgSQL call and a one-row INSERT, and each history and attempt row a
-- foreign-key check that locked its message row again (FOR KEY SHARE): about a third of the
-- claim's time. Now:
--   * statement triggers with transition tables write every history row of a statement in one
--     INSERT … SELECT (the rows and their columns are those of 0004);
--   * message_events and message_attempts no longer carry a foreign key to messages. Only the
--     history trigger and the dispatcher's functions write them, always for the message rows they
--     are changing; the ON DELETE CASCADE the keys gave is a statement trigger on messages.

DROP TRIGGER messages_history ON messages;
DROP FUNCTION ng_message_changed();

CREATE FUNCTION ng_messages_inserted() RETURNS trigger LANGUAGE plpgsql
SET enable_hashjoin = on AS $$
BEGIN
    INSERT INTO message_events (customer_id, message_id, attempt, status, detail)
    SELECT n.customer_id, n.id, n.attempt, n.status,
           coalesce(n.workflow, 'api') || ' ' || n.template
      FROM new_rows n;
    IF EXISTS (SELECT 1 FROM new_rows WHERE status IN ('queued', 'retry', 'deferred')) THEN
        -- One notification per transaction: PostgreSQL folds identical payloads.
        PERFORM pg_notify('nudge_messages', 'queued');
    END IF;
    RETURN NULL;
END $$;

-- A hash join, always: the dispatcher's functions turn hash joins off for their own plans, and a
-- nested loop over two transition tables of 512 rows each compares every pair. Turning them on is
-- not enough: PL/pgSQL keeps the plan made at the first call, and when that call changed one row
-- (a single result recorded) the plan is a nested loop for good; at 350 rows a claim then spent
-- 7.6 ms in this insert alone (0.7 ms with the hash join).
CREATE FUNCTION ng_messages_updated() RETURNS trigger LANGUAGE plpgsql
SET enable_hashjoin = on SET enable_nestloop = off AS $$
BEGIN
    INSERT INTO message_events (customer_id, message_id, attempt, status, previous, detail)
    SELECT n.customer_id, n.id, n.attempt, n.status, o.status,
           CASE WHEN n.status = 'sending' THEN n.lease_owner
                WHEN n.status = 'sent' THEN n.provider_id
                ELSE n.last_error END
      FROM new_rows n JOIN old_rows o ON o.customer_id = n.customer_id AND o.id = n.id
     WHERE n.status IS DISTINCT FROM o.status OR n.attempt IS DISTINCT FROM o.attempt;
    RETURN NULL;
END $$;

CREATE FUNCTION ng_messages_deleted() RETURNS trigger LANGUAGE plpgsql
SET enable_hashjoin = on AS $$
BEGIN
    DELETE FROM message_events e USING old_rows o
     WHERE e.customer_id = o.customer_id AND e.message_id = o.id;
    DELETE FROM message_attempts a USING old_rows o
     WHERE a.customer_id = o.customer_id AND a.message_id = o.id;
    RETURN NULL;
END $$;

CREATE TRIGGER messages_history_insert AFTER INSERT ON messages
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION ng_messages_inserted();
CREATE TRIGGER messages_history_update AFTER UPDATE ON messages
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION ng_messages_updated();
CREATE TRIGGER messages_history_delete AFTER DELETE ON messages
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION ng_messages_deleted();

ALTER TABLE message_events DROP CONSTRAINT message_events_customer_id_message_id_fkey;
ALTER TABLE message_attempts DROP CONSTRAINT message_attempts_customer_id_message_id_fkey;
