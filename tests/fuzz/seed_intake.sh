#!/bin/sh
# tests/fuzz/seed_intake.sh DIR — seeds the fuzz_intake corpus from the shared fixtures: each
# fixture as a signed request ('S' inputs, see fuzz_intake.c) to its route and topic, plus raw
# requests (unsigned, chunked, smuggling attempts, the WooCommerce ping, /v1/events bodies).
set -eu
cd "$(dirname "$0")/../.."
out=${1:?usage: seed_intake.sh DIR}
mkdir -p "$out"
fx=../shared/fixtures
seed() { printf '%b' "$2" >"$out/seed-$1"; }
for f in "$fx"/shopify/*.json; do
	name=$(basename "$f" .json)
	topic=$(echo "$name" | sed 's/_/\//')
	{ printf 'SPOST /v1/webhooks/shopify HTTP/1.1\r\nHost: x\r\nX-Shopify-Topic: %s\r\n' "$topic"
	  printf 'X-Shopify-Shop-Domain: fuzz.myshopify.com\r\nX-Shopify-Event-Id: e-%s\r\n\r\n' "$name"
	  cat "$f"; } >"$out/seed-shopify-$name"
done
for f in "$fx"/woocommerce/*.json; do
	name=$(basename "$f" .json)
	{ printf 'SPOST /v1/webhooks/woocommerce HTTP/1.1\r\nHost: x\r\nX-WC-Webhook-Topic: order.created\r\n'
	  printf 'X-WC-Webhook-Delivery-ID: d1\r\nX-WC-Webhook-Source: https://shop.example/\r\n\r\n'
	  cat "$f"; } >"$out/seed-woo-$name"
	{ printf 'POST /v1/webhooks/woocommerce HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n'
	  printf '%x\r\n' "$(wc -c <"$f")"; cat "$f"; printf '\r\n0\r\n\r\n'; } >"$out/seed-woo-chunked-$name"
done
seed api-one 'SPOST /v1/events HTTP/1.1\r\nHost: x\r\n\r\n{"type":"signup","customer":{"id":9007199254740993,"email":"Jane@Example.com","phone":"+49 (0)30 1234567"},"consent":{"email":"subscribed"},"occurred_at":"2024-05-01T12:00:00+02:00","data":{"a":[1,2,{"b":null}]}}'
seed api-batch 'SPOST /v1/events HTTP/1.1\r\nHost: x\r\nIdempotency-Key: k\r\n\r\n{"events":[{"type":"a.b","customer":{"email":"a@b.cd"}},{"type":"c","customer":{"phone":"555-123-4567"},"consent":{"sms":{"state":"pending","level":"single_opt_in"}}}]}'
seed api-bearer 'POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer fuzz-secret\r\nContent-Length: 48\r\n\r\n{"type":"signup","customer":{"email":"a@b.cd"}}'
seed ping 'POST /v1/webhooks/woocommerce HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 12\r\n\r\nwebhook_id=7'
seed smuggle 'POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n'
seed pipelined 'GET /v1/webhooks/x HTTP/1.1\r\nHost: x\r\n\r\nPOST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}'
