-- Tests for abandoned_cart.lua, run by `nudge test` and `make check` on the virtual clock.
return {
  workflow = "abandoned_cart",
  cases = {
    {
      name = "email after an hour, SMS a day later when consented",
      customer = { email = "ann@example.com", phone = "+15550100001", consent = { sms = "granted" } },
      steps = {
        { event = "checkout.started", data = { checkout_id = "c1", total = 80 } },
        { advance = "59m" },
        { expect_no_send = true },
        { advance = "1m" },
        { expect_sent = { channel = "email", template = "cart_reminder",
                          data = { cart = { checkout_id = "c1", total = 80 } } } },
        { advance = "23h" },
        { expect_sent = { channel = "sms", template = "cart_reminder_sms" } },
        { expect_status = "completed" },
      },
    },
    {
      name = "no SMS without consent",
      customer = { email = "bob@example.com", phone = "+15550100002" },
      steps = {
        { event = "checkout.started", data = { checkout_id = "c2", total = 30 } },
        { advance = "2d" },
        { expect_sent = { channel = "email", template = "cart_reminder" } },
        { expect_no_send = true },
        { expect_status = "completed" },
      },
    },
    {
      name = "an order during the wait ends it at once; nothing more is sent",
      customer = { email = "cy@example.com", phone = "+15550100003", consent = { sms = "granted" } },
      steps = {
        { event = "checkout.started", data = { checkout_id = "c3", total = 50 } },
        { advance = "3h" },
        { expect_sent = { channel = "email", template = "cart_reminder" } },
        { event = "order.placed", data = { checkout_id = "c3", order_id = "o3" } },
        { expect_status = "exited" },
        { advance = "3d" },
        { expect_no_send = true },
      },
    },
    {
      name = "an order before the first email: nothing at all",
      customer = { email = "di@example.com" },
      steps = {
        { event = "checkout.started", data = { checkout_id = "c4", total = 50 } },
        { advance = "30m" },
        { event = "order.placed", data = { checkout_id = "c4" } },
        { advance = "2d" },
        { expect_no_send = true },
        { expect_status = "exited" },
      },
    },
    {
      name = "small carts are left alone",
      customer = { email = "ed@example.com" },
      steps = {
        { event = "checkout.started", data = { checkout_id = "c5", total = 5 } },
        { advance = "2d" },
        { expect_no_send = true },
      },
    },
  },
}
