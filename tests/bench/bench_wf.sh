#!/bin/sh
# tests/bench/bench_wf.sh — the workflow runtime's figures, each against real `.build/nudge serve`
# processes on a private PostgreSQL (tests/pg.sh; fsync off, as in make check):
#
#   effects  effects journaled per second by the daemon running the `drip` workflow (every
#            activation: a send and a wait), against pgbench running the same transaction that
#            activation commits (the fence's row lock, two effect rows, the outbox row, the
#            instance update), with as many clients as the daemon has connections, in the same
#            protocol mode (-M extended; -M prepared is shown too). Goal >= 0.7.
#   rss      the daemon's resident memory with 1,000,000 waiting instances in the database, and
#            with none (the baseline). Goal < 150 MB.
#   drain    100,000 instances that fall due in the same second: how long until the last one has
#            run, and how late they ran (p50, p99). Goal < 20 s on 2 cores.
#
# Sizes: BENCH_WF_DRIP (2000 instances x 10 activations), BENCH_WF_WAITING (1000000),
# BENCH_WF_DRAIN (100000); BENCH_WF_PARTS="effects rss drain" picks the parts. Every command line used is printed before it runs.
set -eu
cd "$(dirname "$0")/../.."
top=$(pwd)
nudge=${NUDGE_BIN:-$top/.build/nudge}
drip=${BENCH_WF_DRIP:-2000}
waiting=${BENCH_WF_WAITING:-1000000}
drain=${BENCH_WF_DRAIN:-100000}
parts=" ${BENCH_WF_PARTS:-effects rss drain} "
want() { case "$parts" in *" $1 "*) return 0 ;; esac; return 1; }
work=$(mktemp -d /tmp/nudge-bench-wf.XXXXXX)
chmod 755 "$work"
pg="$work/pg"
pid=""

cleanup() {
	[ -n "$pid" ] && kill -9 "$pid" 2>/dev/null || true
	tests/pg.sh stop "$pg" >/dev/null 2>&1 || true
	rm -rf "$work"
}
trap cleanup EXIT INT TERM

now() { date +%s.%N; }
# PostgreSQL's own psql: Debian's psql is a Perl wrapper whose start-up, every 0.2 s while a part
# waits, would take CPU from the daemon being measured.
pgpsql=$(ls /usr/lib/postgresql/*/bin/psql 2>/dev/null | sort -V | tail -n 1)
[ -n "$pgpsql" ] || pgpsql=psql
q() { "$pgpsql" -Atq "$db" -c "$1"; }
run() {
	echo "\$ $*"
	"$@"
}

base=$(tests/pg.sh start "$pg")
echo "# PostgreSQL: $base (tests/pg.sh start: fsync=off)"
mkdir -p "$work/workflows"
cat >"$work/workflows/drip.lua" <<'LUA'
return {
  name = "drip",
  trigger = { manual = true },
  run = function(ctx)
    for i = 1, 10 do
      ctx.send{ channel = "email", template = "drip", data = { i = i } }
      ctx.wait("1ms")
    end
  end,
}
LUA
cat >"$work/workflows/once.lua" <<'LUA'
return {
  name = "once",
  trigger = { manual = true },
  run = function(ctx)
    ctx.send{ channel = "email", template = "once" }
  end,
}
LUA

# setup NAME: a fresh migrated database with the two workflows deployed, and a config for it.
setup() {
	psql -Atq "$base" -c "DROP DATABASE IF EXISTS $1" -c "CREATE DATABASE $1" >/dev/null 2>&1
	db=$(echo "$base" | sed "s/dbname=nudge/dbname=$1/")
	"$nudge" migrate --conninfo "$db" >/dev/null 2>&1
	"$nudge" workflows deploy "$work/workflows" --conninfo "$db" >/dev/null 2>&1
	conf="$work/$1.conf.lua"
	cat >"$conf" <<CONF
return {
  database = { conninfo = "$db", pool_size = 4 },
  http = { listen = "127.0.0.1:0" },
  log = { level = "warn" },
  paths = { workflows = "$work/workflows" },
  workflows = { batch = ${BENCH_WF_BATCH:-256} },
}
CONF
}

# instances WORKFLOW COUNT STATUS WAKE_SQL: COUNT customers, each with one instance (same ids).
instances() {
	q "INSERT INTO customers (first_name) SELECT 'c' || g FROM generate_series(1, $2) g"
	q "INSERT INTO instances (customer_id, workflow, version, key, status, wake_at)
	   SELECT c.id, '$1', 1, c.id::text, '$3', $4 FROM customers c ORDER BY c.id"
	# Only the tables filled here: an ANALYZE of the empty messages table would record "0 rows",
	# and every foreign-key check of message_events against messages would then keep a
	# sequential-scan plan until autovacuum next analyzes it (a minute later), making the run
	# quadratic: 38 s instead of 17 s to drain 100,000.
	q "ANALYZE customers, instances"
}

serve() {
	echo "\$ $nudge serve --config $conf &"
	"$nudge" serve --config "$conf" 2>>"$work/serve.log" &
	pid=$!
}

# The daemon's CPU seconds so far (user + system).
cpu_s() { awk -v hz="$(getconf CLK_TCK)" '{ printf "%.1f", ($14 + $15) / hz }' "/proc/$pid/stat"; }

stop() {
	echo "(nudge serve used $(cpu_s) s of CPU)"
	kill -TERM "$pid"
	wait "$pid" || true
	pid=""
}

until_sql() {
	while [ "$(q "$1")" != t ]; do sleep 0.2; done
}

rss_kb() { awk '/^VmRSS/ { print $2 }' "/proc/$pid/status"; }

# ---- effects per second ---------------------------------------------------------------------
if want effects; then
echo
echo "## effects journaled per second ($drip instances of drip: 10 activations of send + wait each)"
setup bench_effects
instances drip "$drip" ready "now() + interval '3 seconds'"
serve
until_sql "SELECT count(*) = 0 FROM instances WHERE status <> 'completed'"
stop
n_eff=$(q "SELECT count(*) FROM effects")
nudge_eps=$(q "SELECT round(count(*) / extract(epoch FROM max(created_at) - min(created_at)))
               FROM effects")
echo "nudge: $n_eff effects in $(q "SELECT round(extract(epoch FROM max(created_at) - min(created_at))::numeric, 2)
      FROM effects") s = $nudge_eps effects/s"
q "CREATE SEQUENCE bench_seq START 1000"
cat >"$work/step.sql" <<'SQL'
\set c random(1, :instances)
BEGIN;
SELECT 1 FROM instances WHERE customer_id = :c AND id = :c FOR UPDATE;
INSERT INTO effects (customer_id, instance_id, seq, kind, args, result, created_at)
  VALUES (:c, :c, nextval('bench_seq'), 'send',
  '{"channel": "email", "data": {"i": 1}, "purpose": "marketing", "template": "drip"}',
  '{"queued": true}', now());
INSERT INTO messages (customer_id, instance_id, seq, workflow, channel, template, purpose, data,
  next_attempt_at, created_at, updated_at) VALUES (:c, :c, currval('bench_seq'), 'drip', 'email',
  'drip', 'marketing', '{"i": 1}', now(), now(), now()) ON CONFLICT (customer_id, instance_id, seq) DO NOTHING;
INSERT INTO effects (customer_id, instance_id, seq, kind, args, result, created_at)
  VALUES (:c, :c, nextval('bench_seq'), 'wait', '{"duration": "1ms"}', '{"until": 1767607200000}', now());
UPDATE instances SET status = 'waiting', error = NULL, wake_at = now(), waiting_for = NULL,
  next_seq = next_seq + 2, lease_owner = NULL, lease_until = NULL, updated_at = now(),
  finished_at = NULL WHERE customer_id = :c AND id = :c;
COMMIT;
SQL
echo "pgbench script (the transaction of one drip activation):"
sed 's/^/    /' "$work/step.sql"
# The baseline speaks the protocol nudge speaks: libpq's PQsendQueryParams is one unnamed
# Parse/Bind/Execute per statement (-M extended). -M prepared (no parse or plan per statement) is
# printed too, as the ceiling a nudge with prepared statements could approach.
for mode in extended prepared; do
	echo "\$ pgbench -n -M $mode -c 4 -j 2 -T 10 -D instances=$drip -f $work/step.sql \"$db\""
	pgbench -n -M "$mode" -c 4 -j 2 -T 10 -D "instances=$drip" -f "$work/step.sql" "$db" \
		>"$work/pgbench-$mode.out" 2>&1 || cat "$work/pgbench-$mode.out"
done
tps=$(awk '/^tps/ { print $3; exit }' "$work/pgbench-extended.out")
tps_p=$(awk '/^tps/ { print $3; exit }' "$work/pgbench-prepared.out")
pg_eps=$(awk -v t="$tps" 'BEGIN { printf "%.0f", t * 2 }')
pg_eps_p=$(awk -v t="$tps_p" 'BEGIN { printf "%.0f", t * 2 }')
echo "pgbench -M extended: $tps transactions/s = $pg_eps effects/s"
echo "pgbench -M prepared: $tps_p transactions/s = $pg_eps_p effects/s"
echo "RESULT effects: nudge $nudge_eps effects/s, pgbench (extended) $pg_eps effects/s, ratio $(awk -v a="$nudge_eps" -v b="$pg_eps" 'BEGIN { printf "%.2f", a / b }') (goal >= 0.7); against -M prepared $(awk -v a="$nudge_eps" -v b="$pg_eps_p" 'BEGIN { printf "%.2f", a / b }')"

fi

# ---- RSS with 1,000,000 waiting instances ---------------------------------------------------
if want rss; then
echo
echo "## RSS with $waiting waiting instances"
setup bench_rss
serve
sleep 3
rss0=$(rss_kb)
stop
t0=$(now)
instances drip "$waiting" waiting "now() + interval '30 days'"
echo "(set up $waiting customers and instances with generate_series in $(awk -v a="$t0" -v b="$(now)" 'BEGIN { printf "%.0f", b - a }') s)"
serve
sleep 10
rss1=$(rss_kb)
hwm=$(awk '/^VmHWM/ { print $2 }' "/proc/$pid/status")
stop
echo "RESULT rss: $((rss1 / 1024)) MB with $waiting waiting instances (peak $((hwm / 1024)) MB), $((rss0 / 1024)) MB with none (goal < 150 MB)"

fi

# ---- drain 100,000 due in the same second ----------------------------------------------------
if want drain; then
echo
echo "## drain: $drain instances of once (one send) due in the same second"
setup bench_drain
instances once "$drain" ready "date_trunc('second', now()) + interval '8 seconds'"
due=$(q "SELECT min(wake_at) FROM instances")
serve
until_sql "SELECT count(*) = 0 FROM instances WHERE status <> 'completed'"
stop
q "SELECT 'RESULT drain: ' || count(*) || ' instances due at ' || '$due' || ' drained in '
   || round(extract(epoch FROM max(m.created_at) - '$due'::timestamptz)::numeric, 2)
   || ' s; lateness p50 ' || round((percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM m.created_at - '$due'::timestamptz)))::numeric, 2)
   || ' s, p99 ' || round((percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM m.created_at - '$due'::timestamptz)))::numeric, 2)
   || ' s (goal < 20 s on ' || $(nproc) || ' cores)' FROM messages m"
grep -i 'error\|warn' "$work/serve.log" | head -n 5 || true
fi
