return {
  workflow = "reengagement",
  cases = {
    {
      name = "90 days without an order: two emails, then marked lapsed, never again",
      customer = { email = "quiet@example.com" },
      steps = {
        { event = "order.placed", data = { order_id = "o1" } },
        { advance = "89d" },
        { expect_no_send = true },
        { advance = "2d" },
        { expect_sent = { template = "we_miss_you" } },
        { advance = "7d" },
        { expect_sent = { template = "last_chance" } },
        { advance = "7d" },
        { expect_status = "completed" },
        { advance = "60d" },
        { expect_no_send = true },
      },
    },
    {
      name = "an order in between ends it",
      customer = { email = "back@example.com" },
      steps = {
        { event = "order.placed", data = { order_id = "o1" } },
        { advance = "91d" },
        { expect_sent = { template = "we_miss_you" } },
        { event = "order.placed", data = { order_id = "o2" } },
        { expect_status = "exited" },
        { advance = "14d" },
        { expect_no_send = true },
      },
    },
  },
}
