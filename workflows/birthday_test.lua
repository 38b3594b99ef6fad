-- The virtual clock starts on Monday 2026-01-05 at 10:00 UTC unless a case sets start_at.
return {
  workflow = "birthday",
  cases = {
    {
      name = "09:00 in the customer's timezone, email and SMS",
      customer = { email = "bd@example.com", phone = "+15550100009", birthday = "1990-01-06",
                   timezone = "Asia/Tokyo", consent = { sms = "granted" } },
      steps = {
        -- 09:00 in Tokyo on Jan 6 is 00:00 UTC, 14 hours after the start.
        { advance = "839m" },
        { expect_no_send = true },
        { advance = "1m" },
        { expect_sent = { channel = "email", template = "birthday" } },
        { expect_sent = { channel = "sms", template = "birthday_sms" } },
        { expect_status = "completed" },
        { advance = "2d" },
        { expect_no_send = true },
      },
    },
    {
      name = "no timezone of their own: 09:00 in the store's default timezone",
      store_timezone = "America/New_York",
      customer = { email = "nytz@example.com", birthday = "1985-01-06" },
      steps = {
        -- 09:00 in New York on Jan 6 is 14:00 UTC, 28 hours after the start.
        { advance = "1679m" },
        { expect_no_send = true },
        { advance = "1m" },
        { expect_sent = { channel = "email", template = "birthday" } },
        { expect_no_send = true },
        { expect_status = "completed" },
      },
    },
    {
      name = "an unknown timezone name falls back to the store's",
      store_timezone = "Europe/Berlin",
      customer = { email = "badtz@example.com", birthday = "1985-01-06", timezone = "Mars/Olympus" },
      steps = {
        -- 09:00 in Berlin on Jan 6 is 08:00 UTC, 22 hours after the start.
        { advance = "1319m" },
        { expect_no_send = true },
        { advance = "1m" },
        { expect_sent = { channel = "email", template = "birthday" } },
      },
    },
    {
      name = "February 29 falls on February 28 in 2027",
      start_at = "2027-02-27T12:00:00Z",
      customer = { email = "leap@example.com", birthday = "2000-02-29" },
      steps = {
        { advance = "20h" },
        { expect_no_send = true },
        { advance = "1h" },
        { expect_sent = { channel = "email", template = "birthday" } },
      },
    },
  },
}
