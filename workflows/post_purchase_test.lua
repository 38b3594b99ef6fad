return {
  workflow = "post_purchase",
  cases = {
    {
      name = "thanks at once, review request after the delivery time",
      customer = { email = "pp@example.com" },
      steps = {
        { event = "order.placed", data = { order_id = "o1", total = 42, delivery_days = 3 } },
        { expect_sent = { template = "order_thanks", data = { order = { order_id = "o1" } } } },
        { advance = "2d" },
        { expect_no_send = true },
        { advance = "1d" },
        { expect_sent = { template = "review_request", data = { order_id = "o1" } } },
        { expect_status = "completed" },
      },
    },
    {
      name = "two orders, two sequences",
      customer = { email = "pp2@example.com" },
      steps = {
        { event = "order.placed", data = { order_id = "a" } },
        { event = "order.placed", data = { order_id = "b" } },
        { expect_sent = { template = "order_thanks" } },
        { expect_sent = { template = "order_thanks" } },
        { advance = "7d" },
        { expect_sent = { template = "review_request" } },
        { expect_sent = { template = "review_request" } },
      },
    },
  },
}
