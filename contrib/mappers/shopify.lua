-- shopify.lua — Shopify webhooks → nudge events.
--
-- One entry per X-Shopify-Topic: function(p, h) receives the payload p (JSON null members are
-- absent, so `first(p.phone, p.customer.phone)` reads naturally; ids are exact 64-bit integers)
-- and the request headers h (any case: h["X-Shopify-Event-Id"]). It returns one event, a list of
-- events, or nil to record nothing. A topic with no entry is answered "ignored" (200), so Shopify
-- stops retrying it. The event fields and the helpers (required, reject, first, str, map, json)
-- are described in docs/events.md; copy this file and change it to map more topics or fields.

-- Shopify's marketing-consent states, in nudge's words. "redacted" (the customer was erased) and
-- "invalid" (the address bounced) both mean: do not send.
local CONSENT_STATE = {
	subscribed = "subscribed",
	not_subscribed = "not_subscribed",
	pending = "pending",
	unsubscribed = "unsubscribed",
	redacted = "unsubscribed",
	invalid = "unsubscribed",
}

-- The detailed consent object (email_marketing_consent / sms_marketing_consent) wins; otherwise a
-- checkbox flag such as buyer_accepts_marketing: ticked means subscribed, unticked only "not
-- subscribed here" (it withdraws nothing given elsewhere).
local function consent(detail, flag, detail_name, flag_name)
	if detail and detail.state then
		return {
			state = CONSENT_STATE[detail.state] or "not_subscribed",
			source = "shopify:" .. detail_name,
			level = detail.opt_in_level,
			updated_at = detail.consent_updated_at,
		}
	end
	if flag ~= nil then
		return { state = flag and "subscribed" or "not_subscribed", source = "shopify:" .. flag_name }
	end
	return nil
end

-- Dedupe: every retry of one event carries the same X-Shopify-Event-Id (newer) or
-- X-Shopify-Webhook-Id. Without either (a hand-made request), the resource and its update time.
local function dedupe(p, h, topic, id)
	local event = h["x-shopify-event-id"]
	if event and event ~= "" then
		return "event:" .. event
	end
	local webhook = h["x-shopify-webhook-id"]
	if webhook and webhook ~= "" then
		return "webhook:" .. webhook
	end
	return table.concat({ "resource", h["x-shopify-shop-domain"] or "", topic, id,
		first(p.updated_at, p.created_at) or "" }, ":")
end

local function address_name(p, field)
	return first(p.billing_address and p.billing_address[field],
		p.shipping_address and p.shipping_address[field])
end

-- The customer of a checkout or an order: the address typed at checkout first (that is where the
-- abandoned-cart mail goes and what buyer_accepts_marketing refers to), then the customer record.
local function buyer(p)
	local c = p.customer or {}
	return {
		source_id = str(c.id),
		email = first(p.email, p.contact_email, c.email),
		phone = first(p.phone, p.sms_marketing_phone, c.phone),
		first_name = first(c.first_name, address_name(p, "first_name")),
		last_name = first(c.last_name, address_name(p, "last_name")),
		locale = p.customer_locale,
	}
end

local function buyer_consent(p)
	local c = p.customer or {}
	return {
		email = consent(c.email_marketing_consent, p.buyer_accepts_marketing,
			"email_marketing_consent", "buyer_accepts_marketing"),
		sms = consent(c.sms_marketing_consent, p.buyer_accepts_sms_marketing,
			"sms_marketing_consent", "buyer_accepts_sms_marketing"),
	}
end

local function line_item(li)
	return {
		title = li.title,
		variant_title = li.variant_title,
		quantity = li.quantity,
		price = li.price,
		line_price = li.line_price,
		sku = li.sku,
		product_id = str(li.product_id),
		variant_id = str(li.variant_id),
		image = first(li.image_url, li.image and li.image.src),
	}
end

local function shop_amount(set)
	return set and set.shop_money and set.shop_money.amount
end

local function checkout(type, topic)
	return function(p, h)
		local token = required(p.token, "checkout token")
		return {
			type = type,
			key = token,
			occurred_at = first(p.updated_at, p.created_at),
			customer = buyer(p),
			consent = buyer_consent(p),
			dedupe = dedupe(p, h, topic, token),
			data = {
				token = token,
				cart_token = p.cart_token,
				checkout_id = str(p.id),
				name = p.name,
				currency = p.currency,
				presentment_currency = p.presentment_currency,
				subtotal_price = p.subtotal_price,
				total_price = p.total_price,
				total_tax = p.total_tax,
				total_discounts = p.total_discounts,
				line_items = map(p.line_items, line_item),
				discount_codes = map(p.discount_codes, function(d) return d.code end),
				recovery_url = p.abandoned_checkout_url,
				completed_at = p.completed_at,
			},
		}
	end
end

local function order(type, topic)
	return function(p, h)
		local id = str(required(p.id, "order id"))
		return {
			type = type,
			key = id,
			occurred_at = first(p.updated_at, p.processed_at, p.created_at),
			customer = buyer(p),
			consent = buyer_consent(p),
			dedupe = dedupe(p, h, topic, id),
			data = {
				order_id = id,
				order_number = p.order_number,
				name = p.name,
				currency = p.currency,
				subtotal_price = p.subtotal_price,
				total_price = p.total_price,
				total_tax = p.total_tax,
				total_discounts = p.total_discounts,
				total_shipping = shop_amount(p.total_shipping_price_set),
				financial_status = p.financial_status,
				line_items = map(p.line_items, line_item),
				discount_codes = map(p.discount_codes, function(d) return d.code end),
				checkout_token = p.checkout_token,
				cart_token = p.cart_token,
				order_status_url = p.order_status_url,
				test = p.test,
			},
		}
	end
end

local function customer(type, topic)
	return function(p, h)
		local id = str(required(p.id, "customer id"))
		local addr = p.default_address or {}
		return {
			type = type,
			key = id,
			occurred_at = first(p.updated_at, p.created_at),
			customer = {
				source_id = id,
				email = p.email,
				phone = p.phone,
				first_name = first(p.first_name, addr.first_name),
				last_name = first(p.last_name, addr.last_name),
				locale = p.locale,
			},
			-- Older API versions send accepts_marketing instead of email_marketing_consent.
			consent = {
				email = consent(p.email_marketing_consent, p.accepts_marketing,
					"email_marketing_consent", "accepts_marketing"),
				sms = consent(p.sms_marketing_consent, nil, "sms_marketing_consent"),
			},
			dedupe = dedupe(p, h, topic, id),
			data = {
				state = p.state,
				verified_email = p.verified_email,
				tags = p.tags,
				currency = p.currency,
				country_code = addr.country_code,
			},
		}
	end
end

-- Carts carry no customer: cart.updated is keyed by the cart token, which a later checkout
-- names as its cart_token.
local function cart(p, h)
	local token = required(first(p.token, p.id), "cart token")
	return {
		type = "cart.updated",
		key = token,
		occurred_at = first(p.updated_at, p.created_at),
		dedupe = dedupe(p, h, "carts/update", token),
		data = {
			cart_token = token,
			note = p.note,
			line_items = map(p.line_items, line_item),
		},
	}
end

return {
	["checkouts/create"] = checkout("checkout.started", "checkouts/create"),
	["checkouts/update"] = checkout("checkout.updated", "checkouts/update"),
	["orders/create"] = order("order.placed", "orders/create"),
	["orders/paid"] = order("order.paid", "orders/paid"),
	["customers/create"] = customer("customer.created", "customers/create"),
	["customers/update"] = customer("customer.updated", "customers/update"),
	["carts/update"] = cart,
}
