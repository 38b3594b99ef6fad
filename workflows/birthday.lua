-- Birthday: a present at 09:00 on the customer's birthday, in their own timezone (the store's
-- default timezone when we do not know theirs). People born on February 29 hear from us on
-- February 28 in other years. Once a year.
return {
  name = "birthday",
  trigger = { date = "birthday", at = "09:00" },

  run = function(ctx)
    local customer = ctx.customer()
    local code = "HBD-" .. ctx.customer_id
    -- priority 10: on a day when frequency caps allow one marketing email, this one goes first.
    ctx.send{ channel = "email", template = "birthday", data = { code = code }, priority = 10 }
    if customer.phone and customer.consent.sms == "granted" then
      ctx.send{ channel = "sms", template = "birthday_sms", data = { code = code },
                priority = 10 }
    end
    -- On Messenger too, for people who talk to the store's page and agreed to hear from it.
    if customer.messenger_psid and customer.consent.messenger == "granted" then
      ctx.send{ channel = "messenger", template = "birthday_messenger", data = { code = code },
                priority = 10 }
    end
  end,
}
