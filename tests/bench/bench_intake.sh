#!/bin/sh
# tests/bench/bench_intake.sh — intake throughput against PostgreSQL's own commit rate.
#
# Starts a private PostgreSQL (tests/pg.sh) and `nudge serve`, then for 1, 32 and 256 keep-alive
# connections runs wrk posting the signed Shopify checkouts/create fixture to /v1/webhooks/shopify
# (tests/bench/intake_checkout.lua: a new X-Shopify-Event-Id per request, so each is a new event:
# customer look-up, consent check, event row, workflow inbox row, commit; BENCH_CUSTOMERS
# customers, 1000 by default), and pgbench with a
# single-row INSERT per transaction at the same client counts on the same cluster. Then an open-loop
# run (tests/bench/intake_loadgen.c): 5,000 requests/s offered on 64 connections, each timed from
# when it was due; the goal is p99 < 20 ms there.
# Reports events/s with p50/p99, the pgbench commit rate, the ratio, and how many group commits
# carried the events. The cluster runs with fsync on (BENCH_FSYNC=off to compare). wrk is installed
# with apt-get when missing. BENCH_SECONDS (default 10) per run; BENCH_INFLIGHT sets
# intake.max_inflight; BENCH_WORKFLOWS another workflows directory (an empty one: intake without
# the shipped workflows reacting to every checkout); BENCH_TRIGGER=off disables the trigger that
# queues each event for the workflow engine, to measure the intake alone.
set -eu
cd "$(dirname "$0")/../.."
top=$(pwd)
secs=${BENCH_SECONDS:-10}
work="$top/.work/bench-intake"
mkdir -p "$work"
if ! command -v wrk >/dev/null 2>&1; then
	echo "bench intake: installing wrk (apt-get install wrk)"
	apt-get install -y -q wrk >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q wrk >/dev/null; }
fi
[ -x .build/nudge ] || { echo "bench intake: .build/nudge is missing (make build)"; exit 1; }

pid=""
cleanup() {
	[ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
	tests/pg.sh stop "$work/pg" >/dev/null 2>&1 || true
}
trap cleanup EXIT INT TERM

conninfo=$(tests/pg.sh start "$work/pg")
pgbin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
as_owner() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
# 256 pgbench clients need more than the test cluster's 200 connections. The test cluster runs
# with fsync off; a commit rate means something only with it on, as in production (BENCH_FSYNC=off
# to compare without).
pgport=$(cat "$work/pg/port")
as_owner "$pgbin/pg_ctl" -D "$work/pg/data" -m fast -w restart -o "-p $pgport \
	-c listen_addresses=127.0.0.1 -c unix_socket_directories=$work/pg \
	-c fsync=${BENCH_FSYNC:-on} -c max_connections=400" >/dev/null
psql "$conninfo" -qc "DROP SCHEMA public CASCADE; CREATE SCHEMA public" >/dev/null
.build/nudge migrate --conninfo "$conninfo" >/dev/null 2>&1
if [ "${BENCH_TRIGGER:-on}" = off ]; then
	# Intake alone: events are not queued for the workflow engine (whose per-event commits
	# otherwise share the cluster with the intake's).
	psql "$conninfo" -qc "ALTER TABLE events DISABLE TRIGGER events_queue_for_workflows" >/dev/null
fi
psql "$conninfo" -qc "CREATE TABLE bench_insert (id bigint GENERATED ALWAYS AS IDENTITY, v integer)" >/dev/null
fsync=$(psql "$conninfo" -Atc "SHOW fsync")
rm -f "$work/commands"

port=$(( 20000 + $(od -An -N2 -tu2 /dev/urandom | tr -d ' ') % 40000 ))
secret=bench-secret
shop=bench.myshopify.com
cat >"$work/nudge.conf.lua" <<CONF
return {
  database = { conninfo = "$conninfo", pool_size = 4 },
  http = { listen = "127.0.0.1:$port", max_connections = 2048 },
  log = { level = "warn" },
  paths = { workflows = "${BENCH_WORKFLOWS:-$top/workflows}" },
  intake = { shopify = { { shop = "$shop", secret = "$secret" } }, max_inflight = ${BENCH_INFLIGHT:-0} },
  channels = {},
}
CONF
.build/nudge serve --config "$work/nudge.conf.lua" 2>"$work/nudge.log" &
pid=$!
for _ in $(seq 1 100); do
	curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
	sleep 0.1
done

# BENCH_CUSTOMERS variants of the fixture, each another customer (id and email) and checkout
# token, signed: a store's checkouts come from many people. BENCH_CUSTOMERS=1 posts the fixture
# itself every time (one customer's row and one instance key, the hottest case).
fixture="$top/../shared/fixtures/shopify/checkouts_create.json"
ncust=${BENCH_CUSTOMERS:-1000}
rm -rf "$work/bodies"
mkdir -p "$work/bodies"
i=1
while [ "$i" -le "$ncust" ]; do
	if [ "$ncust" -eq 1 ]; then
		cp "$fixture" "$work/bodies/1.json"
	else
		sed -e "s/603851970716743400/$((603851970716700000 + i))/g" \
			-e "s/example@email.com/buyer$i@example.com/g" \
			-e "s/\"token\":\"123123123\"/\"token\":\"bench$i\"/" "$fixture" >"$work/bodies/$i.json"
	fi
	openssl dgst -sha256 -hmac "$secret" -binary <"$work/bodies/$i.json" | base64 >>"$work/bodies/sigs"
	i=$((i + 1))
done
export BODY_DIR="$work/bodies" SHOP="$shop"
printf 'INSERT INTO bench_insert (v) VALUES (1);\n' >"$work/insert.sql"

echo "cluster: fsync=$fsync; workflow trigger ${BENCH_TRIGGER:-on}; nudge pool_size=4; ${secs}s per run; $ncust customers; $(nproc) cores shared with the load generators"
printf '%-12s %12s %9s %9s %14s %8s\n' connections "events/s" "p50 ms" "p99 ms" "pgbench tps" ratio
for c in 1 32 256; do
	t=$(( c < 2 ? 1 : 2 ))
	export RUN="r$$-$c"
	out=$(wrk -t"$t" -c"$c" -d"${secs}s" --timeout 10s -s tests/bench/intake_checkout.lua \
		"http://127.0.0.1:$port" 2>&1)
	res=$(echo "$out" | grep '^RESULT' || true)
	[ -n "$res" ] || { echo "$out"; exit 1; }
	rate=$(echo "$res" | sed 's/.*rate=\([0-9.]*\).*/\1/')
	p50=$(echo "$res" | sed 's/.*p50_ms=\([0-9.]*\).*/\1/')
	p99=$(echo "$res" | sed 's/.*p99_ms=\([0-9.]*\).*/\1/')
	errs=$(echo "$res" | sed 's/.*errors=\([0-9]*\).*/\1/')
	tps=$(pgbench -n -M prepared -c "$c" -j "$t" -T "$secs" -f "$work/insert.sql" "$conninfo" 2>/dev/null |
		sed -n 's/^tps = \([0-9.]*\).*/\1/p' | head -n 1)
	ratio=$(awk -v a="$rate" -v b="$tps" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }')
	printf '%-12s %12s %9s %9s %14s %8s%s\n' "$c" "$rate" "$p50" "$p99" "$tps" "$ratio" \
		"$( [ "$errs" = 0 ] || echo "  ($errs errors)")"
	echo "  wrk -t$t -c$c -d${secs}s -s tests/bench/intake_checkout.lua http://127.0.0.1:$port" >>"$work/commands"
	echo "  pgbench -n -M prepared -c $c -j $t -T $secs -f insert.sql" >>"$work/commands"
done
# The latency goal at a rate, open loop: requests due at a constant BENCH_RATE (default 5,000/s) on
# BENCH_PACED_CONNS keep-alive connections (default 64), each timed from when it was due, so a
# queue in front of a slow server counts (tests/bench/intake_loadgen.c; wrk cannot do this).
# It starts from a settled system: the 256-connection run commits events faster than the workflow
# engine handles them, and the inbox it leaves would be drained during the run, measuring the
# recovery from that overload instead of the rate. The drain is reported.
t0=$(date +%s)
while [ "$(psql "$conninfo" -Atc "SELECT EXISTS (SELECT 1 FROM workflow_inbox)")" = t ] &&
	[ $(( $(date +%s) - t0 )) -lt 120 ]; do
	sleep 0.5
done
echo "the workflow engine drained the inbox left by the closed-loop runs in $(( $(date +%s) - t0 )) s"
rate=${BENCH_RATE:-5000}
pconns=${BENCH_PACED_CONNS:-64}
lg="$top/.build/bench/intake_loadgen"
mkdir -p "$top/.build/bench"
cc -std=c11 -D_GNU_SOURCE -O2 -Wall -Wextra $(pkg-config --cflags libuv) tests/bench/intake_loadgen.c \
	$(pkg-config --libs libuv) -o "$lg"
res=$("$lg" 127.0.0.1 "$port" "$rate" "$secs" "$pconns" "$BODY_DIR" "$shop" "r$$-open")
echo "open loop ($rate/s offered on $pconns connections, latency from when each was due): $res"
echo "  .build/bench/intake_loadgen 127.0.0.1 $port $rate $secs $pconns bodies $shop r$$-open" >>"$work/commands"
stored=$(psql "$conninfo" -Atc "SELECT count(*) FROM events")
batches=$(curl -fsS "http://127.0.0.1:$port/metrics" | sed -n 's/^nudge_intake_batches_total{what="batches"} //p')
echo "events stored: $stored, in $batches group commits"
echo "commands:"
cat "$work/commands"
rm -f "$work/commands"
