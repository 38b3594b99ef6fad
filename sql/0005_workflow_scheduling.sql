-- 0005_workflow_scheduling.sql — two things several schedulers on one database need: the fence of
-- sql/0002 rewritten so that PostgreSQL always finds the instance by its primary key, and a shared
-- schedule for the time-driven triggers, so that a date or segment sweep runs once per period
-- across all nodes and restarts rather than once per node and again after every restart.
--
-- The first version locked "WHERE customer_id AND id AND attempt AND status = 'running'". With
-- statistics taken while few instances were running, the planner chose the partial index
-- instances_lease_idx (WHERE status = 'running') for that and scanned every running instance on
-- every step: 5-10 ms per step during a drain of 20,000 due instances instead of 0.05 ms. Here
-- the lookup names only the key, and attempt and status are checked afterwards.
CREATE OR REPLACE FUNCTION ng_wf_fence(p_customer bigint, p_instance bigint, p_attempt integer)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    v_attempt integer;
    v_status text;
BEGIN
    SELECT attempt, status INTO v_attempt, v_status FROM instances
     WHERE customer_id = p_customer AND id = p_instance
       FOR UPDATE;
    IF NOT FOUND OR v_attempt <> p_attempt OR v_status <> 'running' THEN
        RAISE EXCEPTION 'stale lease on instance %/% (attempt %)', p_customer, p_instance, p_attempt
            USING ERRCODE = 'NGWF1';
    END IF;
END $$;

-- One row per workflow with a date or segment trigger: when its next sweep is due. A node runs a
-- sweep only after moving next_run forward in the same statement (INSERT ... ON CONFLICT DO UPDATE
-- ... WHERE next_run <= now), so of two nodes that try at once exactly one runs it.
CREATE TABLE workflow_sweeps (
    workflow    text PRIMARY KEY,
    next_run    timestamptz NOT NULL,
    last_run    timestamptz,
    last_owner  text
);
