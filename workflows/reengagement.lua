-- Re-engagement: customers who have ordered before but not in the last 90 days.
--
-- Once a day the segment below picks them (in batches, read-only): no order for 90 days, no message
-- from this workflow in the last 30 days, and not already marked lapsed since their last order. They get a "we miss you" email,
-- a last-chance email a week later, and a week after that we record them as lapsed (the event
-- customer.lapsed, which other workflows and reports can use). An order ends it at once. Nobody
-- re-enters within 30 days, and a lapsed customer is not picked again until they order.
return {
  name = "reengagement",
  trigger = {
    every = "1d",
    -- $1 is the current time. The query must return customer ids in a column named id.
    segment = [[
      SELECT c.id FROM customers c
       WHERE c.erased_at IS NULL
         AND EXISTS (SELECT 1 FROM events e WHERE e.customer_id = c.id AND e.type = 'order.placed')
         AND NOT EXISTS (SELECT 1 FROM events e WHERE e.customer_id = c.id
                           AND e.type = 'order.placed'
                           AND e.occurred_at > $1::timestamptz - interval '90 days')
         AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.customer_id = c.id
                           AND m.workflow = 'reengagement'
                           AND m.created_at > $1::timestamptz - interval '30 days')
         AND NOT EXISTS (SELECT 1 FROM events l WHERE l.customer_id = c.id
                           AND l.type = 'customer.lapsed'
                           AND l.occurred_at > (SELECT max(occurred_at) FROM events o
                                                 WHERE o.customer_id = c.id
                                                   AND o.type = 'order.placed'))
    ]],
  },
  reentry = "after 30d",
  exits = { "order.placed" },

  run = function(ctx)
    -- on_cap = "drop": if frequency caps are full (say a birthday email went out today), skip
    -- this nudge rather than send it late; the last-chance email still follows.
    ctx.send{ channel = "email", template = "we_miss_you", data = { code = "COMEBACK15" },
              on_cap = "drop" }
    ctx.wait("7d")
    ctx.send{ channel = "email", template = "last_chance", data = { code = "COMEBACK15" } }
    ctx.wait("7d")
    ctx.emit("customer.lapsed", { workflow = ctx.workflow })
  end,
}
