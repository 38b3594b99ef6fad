-- Welcome series: three emails for a new customer.
--
-- On signup: a welcome email at once, tips two days later, and a first-order offer three days
-- after that (day 5) -- unless they have ordered by then. Each customer gets the series once.
return {
  name = "welcome_series",
  trigger = { event = "customer.created" },
  reentry = "once",

  run = function(ctx)
    ctx.send{ channel = "email", template = "welcome" }

    ctx.wait("2d")
    ctx.send{ channel = "email", template = "welcome_tips" }

    ctx.wait("3d")
    -- A read-only query: has this customer ordered anything yet?
    local rows = ctx.query(
      "SELECT count(*) AS orders FROM events WHERE customer_id = $1 AND type = 'order.placed'",
      { ctx.customer_id })
    if rows and rows[1].orders == 0 then
      ctx.send{ channel = "email", template = "welcome_offer", data = { code = "WELCOME10" } }
    end
  end,
}
