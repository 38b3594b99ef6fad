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
    {
      name = "a cancelled order gets no review request",
      customer = { email = "pp3@example.com" },
      steps = {
        { event = "order.placed", data = { order_id = "c1", delivery_days = 3 } },
        { expect_sent = { template = "order_thanks" } },
        { advance = "1d" },
        { event = "order.updated", data = { order_id = "c1", status = "processing" } },
        { event = "order.updated", data = { order_id = "c1", status = "cancelled" } },
        { expect_status = "completed" },
        { advance = "7d" },
        { expect_no_send = true },
      },
    },
    {
      name = "a refunded order gets no review request",
      customer = { email = "pp4@example.com" },
      steps = {
        { event = "order.placed", data = { order_id = "r1", delivery_days = 2 } },
        { expect_sent = { template = "order_thanks" } },
        { event = "order.updated", data = { order_id = "r1", status = "refunded" } },
        { advance = "2d" },
        { expect_status = "completed" },
        { expect_no_send = true },
      },
    },
  },
}
