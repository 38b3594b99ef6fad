-- woocommerce.lua — WooCommerce webhooks → nudge events.
--
-- One entry per X-WC-Webhook-Topic ("order.created"): function(p, h) receives the REST resource
-- of the topic (an order, a customer) and the request headers, and returns one event, a list of
-- events, or nil. Topics with no entry are answered "ignored". WooCommerce's creation ping
-- ("webhook_id=N") is answered by nudge before any mapper runs. See docs/events.md.
--
-- WooCommerce core records no marketing consent. If a plugin stores it in the order's meta_data,
-- read it there, for example (MailPoet's checkout box):
--
--   consent = { email = meta(p, "_mailpoet_subscribe_on_checkout") == "1" and "subscribed" or nil },

-- Product names arrive HTML-escaped ("Ship Your Idea &ndash; Color: Black").
local ENTITIES = {
	amp = "&", lt = "<", gt = ">", quot = '"', apos = "'", nbsp = "\u{a0}",
	ndash = "\u{2013}", mdash = "\u{2014}", hellip = "\u{2026}",
	lsquo = "\u{2018}", rsquo = "\u{2019}", ldquo = "\u{201c}", rdquo = "\u{201d}",
}

local function unescape(s)
	if type(s) ~= "string" then
		return s
	end
	return (s:gsub("&(#?)([xX]?)(%w+);", function(hash, x, name)
		if hash == "#" then
			local code = tonumber(name, x ~= "" and 16 or 10)
			if code and code > 0 and code < 0x110000 then
				return utf8.char(code)
			end
			return nil
		end
		return ENTITIES[name]
	end))
end

local function meta(p, key)
	for _, m in ipairs(p.meta_data or {}) do
		if m.key == key then
			return m.value
		end
	end
	return nil
end

-- WooCommerce sends each delivery once, with a fresh X-WC-Webhook-Delivery-ID, and a resend from
-- the admin gets a new id too: so the resource, the event and its modification time dedupe as
-- well. The site URL keeps two shops' order 727 apart.
local function dedupe(p, h, topic)
	local keys = {}
	local delivery = h["x-wc-webhook-delivery-id"]
	if delivery and delivery ~= "" then
		keys[#keys + 1] = "delivery:" .. delivery
	end
	keys[#keys + 1] = table.concat({ "resource", h["x-wc-webhook-source"] or "", topic, str(p.id),
		first(p.date_modified_gmt, p.date_modified, p.date_created_gmt) or "" }, ":")
	return keys
end

-- The *_gmt fields are UTC but carry no zone; the plain ones are the shop's local time.
local function utc(s)
	if s then
		return s .. "Z"
	end
	return nil
end

local function line_item(li)
	return {
		title = unescape(li.name),
		quantity = li.quantity,
		price = str(li.price),
		line_price = li.total,
		sku = first(li.sku),
		product_id = str(li.product_id),
		variant_id = li.variation_id ~= 0 and str(li.variation_id) or nil,
		image = li.image and first(li.image.src) or nil,
	}
end

local function order(type, topic, time_field)
	return function(p, h)
		local id = str(required(p.id, "order id"))
		local b = p.billing or {}
		return {
			type = type,
			key = id,
			occurred_at = utc(first(p[time_field], p.date_created_gmt)),
			customer = {
				-- 0 is a guest checkout: no account, identified by email.
				source_id = p.customer_id ~= 0 and str(p.customer_id) or nil,
				email = b.email,
				phone = b.phone,
				first_name = b.first_name,
				last_name = b.last_name,
			},
			dedupe = dedupe(p, h, topic),
			data = {
				order_id = id,
				order_number = str(p.number),
				order_key = p.order_key,
				status = p.status,
				currency = p.currency,
				total_price = p.total,
				total_tax = p.total_tax,
				total_discounts = p.discount_total,
				total_shipping = p.shipping_total,
				payment_method = first(p.payment_method_title),
				line_items = map(p.line_items, line_item),
				discount_codes = map(p.coupon_lines, function(c) return c.code end),
				paid_at = utc(p.date_paid_gmt),
			},
		}
	end
end

local function customer(p, h)
	local id = str(required(p.id, "customer id"))
	local b = p.billing or {}
	return {
		type = "customer.created",
		key = id,
		occurred_at = utc(first(p.date_created_gmt, p.date_modified_gmt)),
		customer = {
			source_id = id,
			email = first(p.email, b.email),
			phone = b.phone,
			first_name = first(p.first_name, b.first_name),
			last_name = first(p.last_name, b.last_name),
		},
		dedupe = dedupe(p, h, "customer.created"),
		data = {
			role = p.role,
			is_paying_customer = p.is_paying_customer,
			country_code = first(b.country),
		},
	}
end

return {
	["order.created"] = order("order.placed", "order.created", "date_created_gmt"),
	["order.updated"] = order("order.updated", "order.updated", "date_modified_gmt"),
	["customer.created"] = customer,
}
