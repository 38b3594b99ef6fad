-- Post-purchase: thank the customer for each order at once, then ask for a review once the
-- parcel has had time to arrive (the order's delivery_days, or 7 days) -- unless the order was
-- cancelled or refunded in the meantime (an order.updated with that status ends the sequence).
return {
  name = "post_purchase",
  trigger = { event = "order.placed" },
  -- One sequence per order (events without an order id count as their own order).
  key = function(e) return e.data.order_id or e.id end,

  run = function(ctx)
    local order = ctx.event.data
    ctx.send{ channel = "email", template = "order_thanks", purpose = "transactional",
              data = { order = order } }

    -- Waits out the delivery time; returns early with the event if the order is cancelled.
    local delivery = ((order.delivery_days or 7) * 86400) .. "s"
    local cancelled = ctx.wait_for("order.updated", {
      match = { order_id = order.order_id, status = "cancelled" }, timeout = delivery })
    if cancelled then return end
    local refunded = ctx.query(
      "SELECT count(*) AS n FROM events WHERE customer_id = $1 AND type = 'order.updated'"
        .. " AND data->>'order_id' = $2 AND data->>'status' = 'refunded'",
      { ctx.customer_id, tostring(order.order_id) })
    if refunded and refunded[1].n > 0 then return end

    ctx.send{ channel = "email", template = "review_request", data = { order_id = order.order_id } }
  end,
}
