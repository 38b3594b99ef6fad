#!/bin/sh
# contrib/demo.sh — what `make demo` runs: a private PostgreSQL under .work/demo, `nudge migrate`, a
# local SMTP sink (postfix's smtp-sink, which writes each message it receives to a file), then
# `nudge serve` with contrib/demo/nudge.conf.lua: the shipped workflows, the smtp plugin pointed at
# the sink, and a clock running 3600 times faster (clock.speed), so an hour of workflow time takes a
# second. A shopper abandons a checkout; a second later the abandoned-cart email arrives at the sink
# and is shown, with the message's history; then the demo follows the email's unsubscribe link.
# On a terminal it keeps running until Ctrl-C; otherwise it stops by itself once it has shown all.
set -eu
cd "$(dirname "$0")/.."
top=$(pwd)
work="$top/.work/demo"
mkdir -p "$work"

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

pid=""
sinkpid=""
stop_all() {
	if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
		say "stopping nudge (SIGTERM: it drains and exits)"
		kill -TERM "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null && echo "nudge exited with status 0" || echo "nudge exited with status $?"
	fi
	if [ -n "$sinkpid" ]; then
		kill "$sinkpid" 2>/dev/null || true
	fi
	tests/pg.sh stop "$work/pg" >/dev/null 2>&1 || true
}
trap stop_all EXIT
trap 'exit 0' INT TERM

# A random high port; the daemon or the sink refuses it if taken.
randport() { echo $(( 20000 + $(od -An -N2 -tu2 /dev/urandom | tr -d ' ') % 40000 )); }

say "starting a private PostgreSQL in $work/pg (fresh each run)"
tests/pg.sh stop "$work/pg" >/dev/null 2>&1 || true
rm -rf "$work/pg"
conninfo=$(tests/pg.sh start "$work/pg")
echo "$conninfo"
export NUDGE_DATABASE="$conninfo"
sql() { psql "$NUDGE_DATABASE" -v ON_ERROR_STOP=1 -qAt "$@"; }

say "nudge migrate"
.build/nudge migrate --conninfo "$NUDGE_DATABASE"

say "starting smtp-sink (postfix) — it writes every message it receives to $work/sink/"
rm -rf "$work/sink"
mkdir -p "$work/sink"
chmod 777 "$work/sink" # smtp-sink drops privileges to nobody when run as root
export NUDGE_SMTP_PORT=$(randport)
if [ "$(id -u)" -eq 0 ]; then sinkuser="-u nobody"; else sinkuser=""; fi
# shellcheck disable=SC2086
/usr/sbin/smtp-sink $sinkuser -d "$work/sink/%H%M%S." "127.0.0.1:$NUDGE_SMTP_PORT" 16 &
sinkpid=$!
echo "smtp-sink listening on 127.0.0.1:$NUDGE_SMTP_PORT"

export NUDGE_LISTEN="127.0.0.1:$(randport)"
export NUDGE_BASE_URL="http://$NUDGE_LISTEN"
conf="$work/nudge.conf.lua"
sed "s/port = 2525,/port = $NUDGE_SMTP_PORT,/" contrib/demo/nudge.conf.lua >"$conf"

say "nudge config check $conf"
.build/nudge config check "$conf"

say "nudge send-test: one message through the smtp plugin, now"
.build/nudge send-test --config "$conf" --channel email --template welcome --to test@example.org \
	--data '{"customer": {"first_name": "Tess"}}' 2>/dev/null

say "nudge serve --config $conf (listening on $NUDGE_LISTEN, clock.speed = 3600)"
.build/nudge serve --config "$conf" 2>"$work/nudge.log" &
pid=$!
for _ in $(seq 1 100); do
	curl -fsS "http://$NUDGE_LISTEN/healthz" >/dev/null 2>&1 && break
	kill -0 "$pid" 2>/dev/null || { cat "$work/nudge.log"; exit 1; }
	sleep 0.1
done
curl -sS "http://$NUDGE_LISTEN/healthz"
echo
for _ in $(seq 1 50); do
	[ "$(sql -c "SELECT count(*) FROM workflows WHERE name = 'abandoned_cart'")" = 1 ] && break
	sleep 0.1
done

fixture="$top/../shared/fixtures/shopify/checkouts_create.json"
[ -f "$fixture" ] || fixture=/work/shared/fixtures/shopify/checkouts_create.json
email=$(sed -n 's/.*"email": *"\([^"]*\)".*/\1/p' "$fixture" | head -n 1)

say "the shopper ($email) signs up for the newsletter: POST /v1/events from the store's form"
cat >"$work/signup.json" <<EOF
{ "type": "newsletter.signup", "customer": { "email": "$email", "first_name": "Jane" },
  "consent": { "email": { "state": "subscribed", "source": "signup_form" } },
  "idempotency_key": "demo-signup-$email" }
EOF
.build/nudge events send "$work/signup.json" --url "http://$NUDGE_LISTEN" --key demo-api-key

say "they start a checkout: Shopify posts checkouts/create (the fixture, signed with the shop's secret)"
post_checkout() { # $1: the X-Shopify-Hmac-Sha256 to send
	curl -sS -w '  HTTP %{http_code}\n' -X POST "http://$NUDGE_LISTEN/v1/webhooks/shopify" \
		-H 'Content-Type: application/json' -H 'X-Shopify-Topic: checkouts/create' \
		-H 'X-Shopify-Shop-Domain: demo-store.myshopify.com' -H "X-Shopify-Hmac-Sha256: $1" \
		-H "X-Shopify-Webhook-Id: demo-$(date +%s)" --data-binary @"$fixture"
}
hmac=$(openssl dgst -sha256 -hmac demo-shopify-secret -binary "$fixture" | base64)
post_checkout "$hmac"
echo "the same bytes with a wrong signature are refused, and nothing is written:"
post_checkout "AAAA$hmac"
cid=$(sql -c "SELECT id FROM customers WHERE email = lower('$email')")
echo "customer $cid ($email): $(sql -c "SELECT string_agg(type, ', ' ORDER BY id) FROM events WHERE customer_id = $cid")"

say "waiting for the abandoned-cart email (one hour of workflow time: about a second)"
t0=$(date +%s)
found=""
for _ in $(seq 1 300); do
	found=$(grep -l "nudge-$cid-" "$work/sink/"* 2>/dev/null | head -n 1 || true)
	[ -n "$found" ] && break
	sleep 0.1
done
if [ -z "$found" ]; then
	echo "no email arrived; the daemon's log:"
	cat "$work/nudge.log"
	exit 1
fi
echo "arrived after $(( $(date +%s) - t0 )) s real time; as received by smtp-sink ($found):"
echo
cat "$found"

say "the message's history (message_events, message_attempts)"
sql -F ' | ' -c "SELECT to_char(at, 'HH24:MI:SS.MS'), attempt, coalesce(previous, '-') || ' -> ' || status,
	coalesce(detail, '') FROM message_events WHERE customer_id = $cid ORDER BY id"
sql -F ' | ' -c "SELECT 'attempt ' || attempt, outcome, provider_id FROM message_attempts WHERE customer_id = $cid"

say "following the email's unsubscribe link"
url=$(sed -n 's/^List-Unsubscribe: <\(http[^>]*\)>.*/\1/p' "$found" | head -n 1)
echo "GET $url"
curl -sS "$url" | sed -n 's:.*<h1>\(.*\)</h1><p>\(.*\)</p>.*:  \1 — \2:p'
echo "POST $url (RFC 8058 one-click)"
curl -sS -o /dev/null -w '  HTTP %{http_code}\n' -d 'List-Unsubscribe=One-Click' "$url"
sql -F ' | ' -c "SELECT channel, purpose, status, source FROM consent_current WHERE customer_id = $cid"

say "the daemon's log"
cat "$work/nudge.log"

if [ -t 0 ]; then
	say "nudge is running on http://$NUDGE_LISTEN — press Ctrl-C to stop it"
	tail -n 0 -f "$work/nudge.log" &
	tailpid=$!
	wait "$pid" || true
	kill "$tailpid" 2>/dev/null || true
fi
