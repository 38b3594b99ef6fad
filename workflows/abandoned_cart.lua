-- Abandoned cart: a shopper started checking out and did not finish.
--
-- One hour after the checkout starts we email them their cart. If they still have not ordered
-- 23 hours after that, and they agreed to receive marketing texts, we send one SMS (and one Messenger
-- message when they are linked to the page and opted in there). The moment
-- they place an order the workflow ends, even in the middle of a wait: nothing more is sent.
--
-- To adapt: change the minimum cart value in `filter`, the delays in ctx.wait / timeout, or the
-- template names (templates/cart_reminder.*, templates/cart_reminder_sms.*,
-- templates/cart_reminder_messenger.*).
return {
  name = "abandoned_cart",

  -- Starts on every checkout worth more than 20 (in the store's currency).
  trigger = {
    event = "checkout.started",
    -- The store mappers give total_price as a string ("421.88"); `total` is the generic API's.
    filter = function(e) return (tonumber(e.data.total_price or e.data.total) or 0) > 20 end,
  },

  -- One reminder sequence per checkout: a second checkout.started for the same checkout id while
  -- this one runs does not start another.
  key = function(e) return e.data.checkout_id end,

  -- An order ends the sequence at once.
  exits = { "order.placed" },

  run = function(ctx)
    local cart = ctx.event.data

    ctx.wait("1h")
    ctx.send{ channel = "email", template = "cart_reminder", data = { cart = cart } }

    -- Give them the rest of the day. wait_for returns the order event, or nil after the timeout.
    local order = ctx.wait_for("order.placed", {
      match = { checkout_id = cart.checkout_id },
      timeout = "23h",
    })
    if order then return end

    -- Texts only with consent (the dispatcher checks consent again before sending).
    local customer = ctx.customer()
    if customer.phone and customer.consent.sms == "granted" then
      ctx.send{ channel = "sms", template = "cart_reminder_sms", data = { cart = cart } }
    end
    -- On Messenger too, once they have written to the page (which links their PSID) and opted in.
    if customer.messenger_psid and customer.consent.messenger == "granted" then
      ctx.send{ channel = "messenger", template = "cart_reminder_messenger", data = { cart = cart } }
    end
  end,
}
