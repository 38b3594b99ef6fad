-- 0015_wf_inbox_done_per_chunk.sql — the inbox rows of a chunk of events consumed by one statement.
--
-- The workflow engine handles up to 64 inbox events in one transaction (core/wf_inbox.c). It
-- consumed them with one ng_wf_inbox_done call each, and those deletes from the small, hot inbox
-- table were the largest part of its database time under intake load (about 60 µs each by
-- pg_stat_statements, against 13 µs for the instance insert beside it). This takes the chunk's
-- rows in one statement, by event id (unique: events' ids are one identity), with the same fence:
-- every row must still be held by the caller, else nothing of the chunk is recorded (NGWF2) and
-- the engine handles its events one per transaction, as before.
CREATE FUNCTION ng_wf_inbox_done_many(p_events bigint[], p_owner text)
RETURNS void LANGUAGE plpgsql
-- A generic plan for "event_id = ANY (…)" on a table that autovacuum keeps tiny could be a
-- sequential scan of every page the queue has touched since; the index is always right here.
SET enable_seqscan = off AS $$
DECLARE
    n integer;
BEGIN
    DELETE FROM workflow_inbox WHERE event_id = ANY (p_events) AND lease_owner = p_owner;
    GET DIAGNOSTICS n = ROW_COUNT;
    IF n <> cardinality(p_events) THEN
        RAISE EXCEPTION '% of % inbox events are no longer held by %',
            cardinality(p_events) - n, cardinality(p_events), p_owner
            USING ERRCODE = 'NGWF2';
    END IF;
END $$;
