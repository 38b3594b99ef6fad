-- Post-purchase: thank the customer for each order at once, then ask for a review once the
-- parcel has had time to arrive (the order's delivery_days, or 7 days).
return {
  name = "post_purchase",
  trigger = { event = "order.placed" },
  -- One sequence per order (events without an order id count as their own order).
  key = function(e) return e.data.order_id or e.id end,

  run = function(ctx)
    local order = ctx.event.data
    ctx.send{ channel = "email", template = "order_thanks", purpose = "transactional",
              data = { order = order } }

    ctx.wait(((order.delivery_days or 7) * 86400) .. "s")
    ctx.send{ channel = "email", template = "review_request", data = { order_id = order.order_id } }
  end,
}
