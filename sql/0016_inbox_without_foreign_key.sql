-- 0016_inbox_without_foreign_key.sql — the workflow inbox row of an event without a foreign key.
--
-- Every accepted event gets its inbox row from the events insert trigger (sql/0002, 0012), in the
-- same transaction, from the row itself: the key can never be wrong. Checking it anyway locked the
-- event row just written (FOR KEY SHARE) for every event, about a quarter of the inbox insert and
-- an eighth of the event insert under intake load. The ON DELETE CASCADE the key gave (an erased
-- customer's events, a retention purge) is a statement trigger on events, as 0014 did for the
-- message history.
CREATE FUNCTION ng_events_deleted() RETURNS trigger LANGUAGE plpgsql
SET enable_hashjoin = on AS $$
BEGIN
    DELETE FROM workflow_inbox w USING old_rows o
     WHERE w.customer_id = o.customer_id AND w.event_id = o.id;
    RETURN NULL;
END $$;
CREATE TRIGGER events_inbox_delete AFTER DELETE ON events
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION ng_events_deleted();
ALTER TABLE workflow_inbox DROP CONSTRAINT workflow_inbox_customer_id_event_id_fkey;
