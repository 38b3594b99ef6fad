-- 0013_dispatch_claim_order.sql — the dispatcher's claim reads due messages in time order and stops
-- at its limit.
--
-- With bitmap scans allowed, the planner (trusting statistics from when the outbox was small)
-- read every due message of the partial index messages_due_idx and sorted them to keep the first
-- few thousand: each claim cost time in proportion to the whole backlog (30,000 due: 31 ms for a
-- claim of 512; 24 ms with the ordered index scan). Sequential scans, hash and merge joins are
-- already off for this function (0004, 0007).
ALTER FUNCTION ng_dispatch_claim(text, timestamptz, timestamptz, integer, text, text, boolean)
    SET enable_bitmapscan = off;
