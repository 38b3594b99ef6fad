return {
  workflow = "welcome_series",
  cases = {
    {
      name = "welcome, tips on day 2, offer on day 5",
      customer = { email = "new@example.com", first_name = "Nia" },
      steps = {
        { event = "customer.created" },
        { expect_sent = { template = "welcome" } },
        { advance = "2d" },
        { expect_sent = { template = "welcome_tips" } },
        { advance = "3d" },
        { expect_sent = { template = "welcome_offer", data = { code = "WELCOME10" } } },
        { expect_status = "completed" },
      },
    },
    {
      name = "no offer after an order; the series never restarts",
      customer = { email = "buyer@example.com" },
      steps = {
        { event = "customer.created" },
        { advance = "1d" },
        { event = "order.placed", data = { order_id = "o1" } },
        { advance = "5d" },
        { expect_sent = { template = "welcome" } },
        { expect_sent = { template = "welcome_tips" } },
        { expect_no_send = true },
        { event = "customer.created" },
        { expect_no_send = true },
      },
    },
  },
}
