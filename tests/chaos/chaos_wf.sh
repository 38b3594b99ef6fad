#!/bin/sh
# tests/chaos/chaos_wf.sh — the workflow runtime against real `.build/nudge serve` processes:
#
#   kill   CHAOS_INSTANCES (1000) instances mid-flight; the daemon is killed with SIGKILL at a random
#          moment CHAOS_KILLS (20) times and restarted each time, then left to finish.
#   share  CHAOS_SHARED (10000) instances run by two daemons on one database at the same time.
#
# After each: every instance completed; every send step has exactly one outbox row and every outbox
# row is a journaled send step; each instance journaled each of its 12 steps exactly once; every
# instance's messages carry the A/B arm its journaled split returned (a replay never re-decided it);
# no daemon logged a duplicate write. Ends with "N passed, M failed".
set -eu
cd "$(dirname "$0")/../.."
top=$(pwd)
nudge=${NUDGE_BIN:-$top/.build/nudge}
instances=${CHAOS_INSTANCES:-1000}
kills=${CHAOS_KILLS:-20}
shared=${CHAOS_SHARED:-10000}
work=$(mktemp -d /tmp/nudge-chaos.XXXXXX)
chmod 755 "$work"
pg="$work/pg"
pids=""
passed=0
failed=0

cleanup() {
	for p in $pids; do kill -9 "$p" 2>/dev/null || true; done
	tests/pg.sh stop "$pg" >/dev/null 2>&1 || true
	rm -rf "$work"
}
trap cleanup EXIT INT TERM

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
rand() { echo $(( $(od -An -N2 -tu2 /dev/urandom | tr -d ' ') % $1 )); }
q() { psql -Atq "$db" -c "$1"; }
ok() { echo "ok chaos_wf: $1"; passed=$((passed + 1)); }
not_ok() { echo "not ok chaos_wf: $1"; failed=$((failed + 1)); }

base=$(tests/pg.sh start "$pg")
echo "# PostgreSQL: $base"

mkdir -p "$work/workflows"
cat >"$work/workflows/chaos.lua" <<'LUA'
-- 12 steps: a split, five sends each followed by a one-second wait, an emitted event.
return {
  name = "chaos",
  trigger = { manual = true },
  run = function(ctx)
    local arm = ctx.split("arm", { "a", "b" })
    for i = 1, 5 do
      ctx.send{ channel = "email", template = "step" .. i, data = { arm = arm, i = i } }
      ctx.wait("1s")
    end
    ctx.emit("chaos.done", { arm = arm })
  end,
}
LUA

# setup NAME COUNT SPREAD_S: a fresh database with COUNT ready instances falling due over SPREAD_S s.
setup() {
	psql -Atq "$base" -c "DROP DATABASE IF EXISTS $1" -c "CREATE DATABASE $1" >/dev/null
	db=$(echo "$base" | sed "s/dbname=nudge/dbname=$1/")
	"$nudge" migrate --conninfo "$db" >/dev/null 2>&1
	"$nudge" workflows deploy "$work/workflows" --conninfo "$db" >/dev/null 2>&1
	q "WITH c AS (INSERT INTO customers (first_name) SELECT 'c' || g FROM generate_series(1, $2) g
	   RETURNING id)
	   INSERT INTO instances (customer_id, workflow, version, key, status, wake_at)
	   SELECT id, 'chaos', 1, id::text, 'ready', now() + random() * interval '$3 seconds' FROM c"
	cat >"$work/$1.conf.lua" <<CONF
return {
  database = { conninfo = "$db", pool_size = 4 },
  http = { listen = "127.0.0.1:0" },
  paths = { workflows = "$work/workflows" },
  workflows = { lease_ms = 2000, poll_ms = 250, batch = 64 },
  shutdown_timeout_ms = 20000,
}
CONF
	conf="$work/$1.conf.lua"
}

left() { q "SELECT count(*) FROM instances WHERE status <> 'completed'"; }

# wait_done TIMEOUT_S: until every instance completed.
wait_done() {
	tw=$(now)
	while [ "$(left)" -gt 0 ]; do
		if [ "$(awk -v a="$tw" -v b="$(now)" -v t="$1" 'BEGIN { print (b - a > t) }')" = 1 ]; then
			return 1
		fi
		sleep 0.5
	done
}

# verify LABEL COUNT LOGS...: the invariants above.
verify() {
	label=$1
	n=$2
	shift 2
	got=$(q "SELECT concat_ws(' ',
	  (SELECT count(*) FROM instances WHERE status <> 'completed'),
	  (SELECT count(*) FROM messages),
	  (SELECT count(*) FROM effects WHERE kind = 'send'),
	  (SELECT count(*) FROM effects),
	  (SELECT count(*) FROM messages m WHERE NOT EXISTS (SELECT 1 FROM effects e
	     WHERE e.customer_id = m.customer_id AND e.instance_id = m.instance_id AND e.seq = m.seq
	     AND e.kind = 'send')),
	  (SELECT count(*) FROM effects e WHERE e.kind = 'send' AND (SELECT count(*) FROM messages m
	     WHERE m.customer_id = e.customer_id AND m.instance_id = e.instance_id AND m.seq = e.seq) <> 1),
	  (SELECT count(*) FROM (SELECT 1 FROM effects GROUP BY customer_id, instance_id
	     HAVING count(*) <> 12 OR count(DISTINCT seq) <> 12 OR max(seq) <> 11) j),
	  (SELECT count(*) FROM (SELECT 1 FROM messages m JOIN effects s ON s.customer_id = m.customer_id
	     AND s.instance_id = m.instance_id AND s.seq = 0
	     WHERE m.data->>'arm' IS DISTINCT FROM s.result->>'variant') a),
	  (SELECT count(*) FROM events WHERE type = 'chaos.done'))")
	want="0 $((n * 5)) $((n * 5)) $((n * 12)) 0 0 0 0 $n"
	dups=$(cat "$@" | grep -c 'duplicate key' || true)
	echo "# $label: not completed, outbox rows, send steps, effects, outbox rows without a send step,"
	echo "#   send steps without exactly one outbox row, instances whose journal is not 12 distinct steps,"
	echo "#   messages with another arm than the journaled split, emitted events:"
	echo "#   got  $got"
	echo "#   want $want; duplicate-key log lines: $dups"
	if [ "$got" = "$want" ] && [ "$dups" -eq 0 ]; then
		ok "$label: every instance completed, every step exactly once"
	else
		not_ok "$label: invariants broken"
	fi
}

# ---- kill: SIGKILL at random moments, restart, finish ------------------------------------------
setup chaos_kill "$instances" 50
echo "# kill: $instances instances falling due over 50 s, each 12 steps (5 sends, 5 waits of 1 s)"
echo "# daemon: $nudge serve --config $conf  (workflows.lease_ms = 2000)"
t0=$(now)
i=1
while [ "$i" -le "$kills" ]; do
	"$nudge" serve --config "$conf" 2>>"$work/kill.log" &
	pid=$!
	pids=$pid
	ms=$((300 + $(rand 2700)))
	sleep "$(awk -v m="$ms" 'BEGIN { printf "%.3f", m / 1000 }')"
	kill -9 "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
	pids=""
	echo "# kill $i after $ms ms: $(q "SELECT count(*) FROM instances WHERE status = 'completed'") of $instances completed, $(q "SELECT count(*) FROM messages") outbox rows, $(q "SELECT count(*) FROM instances WHERE status = 'running'") held by a dead lease"
	i=$((i + 1))
done
"$nudge" serve --config "$conf" 2>>"$work/kill.log" &
pid=$!
pids=$pid
if wait_done 300; then
	echo "# kill: all $instances completed $(elapsed "$t0") s after the first start"
else
	echo "# kill: $(left) instances still not completed after 300 s"
fi
kill -TERM "$pid"
wait "$pid" || echo "# the last daemon exited with status $?"
pids=""
fenced=$(grep -c 'step dropped, lease attempt' "$work/kill.log" || true)
echo "# kill: $kills SIGKILLs; steps rejected by the fence: $fenced"
verify "kill ($instances instances, $kills SIGKILLs)" "$instances" "$work/kill.log"

# ---- share: two daemons, one database --------------------------------------------------------
setup chaos_share "$shared" 10
echo "# share: $shared instances falling due over 10 s, two daemons: $nudge serve --config $conf (x2)"
t0=$(now)
"$nudge" serve --config "$conf" 2>"$work/share-a.log" &
pa=$!
"$nudge" serve --config "$conf" 2>"$work/share-b.log" &
pb=$!
pids="$pa $pb"
if wait_done 900; then
	echo "# share: all $shared completed in $(elapsed "$t0") s"
else
	echo "# share: $(left) instances still not completed after 900 s"
fi
kill -TERM "$pa" "$pb"
wait "$pa" || true
wait "$pb" || true
pids=""
for l in a b; do
	echo "# daemon $l: $(grep -o 'activations=[0-9]*.*fenced=[0-9]*' "$work/share-$l.log" | tail -n 1)"
done
verify "share ($shared instances, two daemons)" "$shared" "$work/share-a.log" "$work/share-b.log"
for l in a b; do
	a=$(grep -o 'activations=[0-9]*' "$work/share-$l.log" | tail -n 1 | cut -d= -f2)
	if [ "${a:-0}" -gt 0 ]; then
		ok "share: daemon $l did part of the work ($a activations)"
	else
		not_ok "share: daemon $l did nothing"
	fi
done

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
