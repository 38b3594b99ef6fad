-- api.lua — POST /v1/events → nudge events. The request body is one event or a batch:
--
--   { "type": "signup", "customer": { "id": "42", "email": "a@b.example" },
--     "data": { ... }, "key": "...", "idempotency_key": "...", "occurred_at": "...Z",
--     "consent": { "email": "subscribed" } }
--
--   { "events": [ { ... }, { ... } ] }
--
-- The caller is a developer who can fix the request, so everything is checked and a mistake is
-- answered 400 with the reason (nudge also loads this mapper in strict mode: an email or phone that
-- does not normalise is refused rather than dropped). The format is documented in docs/events.md.

local EVENT_FIELDS = {
	type = true, customer = true, data = true, key = true, idempotency_key = true,
	occurred_at = true, consent = true,
}
local CUSTOMER_FIELDS = {
	id = true, email = true, phone = true, first_name = true, last_name = true, locale = true,
	timezone = true, properties = true,
}
local CONSENT_STATES = { subscribed = true, not_subscribed = true, unsubscribed = true, pending = true }
local CHANNELS = { email = true, sms = true, messenger = true }

local function is_object(v)
	return type(v) == "table" and not json.is_array(v)
end

local function sorted_keys(t)
	local keys = {}
	for k in pairs(t) do
		keys[#keys + 1] = tostring(k)
	end
	table.sort(keys)
	return keys
end

-- Keys are visited in sorted order so that the same request always gets the same answer.
local function check_fields(t, known, where)
	for _, k in ipairs(sorted_keys(t)) do
		if not known[k] then
			reject(where .. "unknown field '" .. k .. "' (known: "
				.. table.concat(sorted_keys(known), ", ") .. ")")
		end
	end
end

local function check_type(t, where)
	if type(t) ~= "string" or t == "" then
		reject(where .. "'type' is required: a name such as 'signup' or 'wishlist.item_added'")
	end
	if #t > 64 then
		reject(where .. "type '" .. t .. "' is longer than 64 characters")
	end
	for part in (t .. "."):gmatch("(.-)%.") do
		if not part:match("^[a-z][a-z0-9_]*$") then
			reject(where .. "type '" .. t .. "' must be lower-case words joined by dots "
				.. "(letters, digits, _), such as 'wishlist.item_added'")
		end
	end
end

local function string_or_integer(v, what, where)
	if v == nil then
		return nil
	end
	if type(v) == "string" or math.type(v) == "integer" then
		return str(v)
	end
	reject(where .. what .. " must be a string or an integer")
end

local function check_consent(c, where)
	if c == nil then
		return nil
	end
	if not is_object(c) then
		reject(where .. "'consent' must be an object such as {\"email\": \"subscribed\"}")
	end
	for _, channel in ipairs(sorted_keys(c)) do
		local v = c[channel]
		if not CHANNELS[channel] then
			reject(where .. "consent channel '" .. channel .. "' is not email, sms or messenger")
		end
		local state = is_object(v) and v.state or v
		if not CONSENT_STATES[state] then
			reject(where .. "consent." .. channel .. " must be subscribed, not_subscribed, "
				.. "unsubscribed or pending")
		end
	end
	return c
end

local function one(e, h, where, idem_header)
	if not is_object(e) then
		reject(where .. "an event must be a JSON object")
	end
	check_fields(e, EVENT_FIELDS, where)
	check_type(e.type, where)

	local c = e.customer
	if not is_object(c) then
		reject(where .. "'customer' is required: an object with an id, an email or a phone")
	end
	check_fields(c, CUSTOMER_FIELDS, where .. "customer: ")
	local id = string_or_integer(c.id, "customer.id", where)
	if not first(id, c.email, c.phone) then
		reject(where .. "the customer needs an id, an email or a phone")
	end
	for _, f in ipairs({ "email", "phone", "first_name", "last_name", "locale", "timezone" }) do
		if c[f] ~= nil and type(c[f]) ~= "string" then
			reject(where .. "customer." .. f .. " must be a string")
		end
	end
	if c.properties ~= nil and not is_object(c.properties) then
		reject(where .. "customer.properties must be an object")
	end
	if e.data ~= nil and not is_object(e.data) then
		reject(where .. "'data' must be an object")
	end
	if e.occurred_at ~= nil and type(e.occurred_at) ~= "string" then
		reject(where .. "'occurred_at' must be a time such as \"2024-05-01T10:00:00Z\"")
	end

	local idem = string_or_integer(e.idempotency_key, "idempotency_key", where) or idem_header
	return {
		type = e.type,
		key = string_or_integer(e.key, "key", where),
		occurred_at = e.occurred_at,
		customer = {
			source_id = id,
			email = c.email,
			phone = c.phone,
			first_name = c.first_name,
			last_name = c.last_name,
			locale = c.locale,
			timezone = c.timezone,
			properties = c.properties,
		},
		consent = check_consent(e.consent, where),
		data = e.data,
		dedupe = idem and ("idem:" .. idem) or nil,
	}
end

return {
	events = function(p, h)
		local header = first(h["idempotency-key"])
		if p.events == nil then
			return one(p, h, "", header)
		end
		if not json.is_array(p.events) then
			reject("'events' must be an array of events")
		end
		check_fields(p, { events = true }, "")
		local out = {}
		for i, e in ipairs(p.events) do
			-- A retried batch with the same Idempotency-Key dedupes item by item.
			out[i] = one(e, h, "events[" .. i .. "]: ", header and (header .. ":" .. i))
		end
		return out
	end,
}
