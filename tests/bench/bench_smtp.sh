#!/bin/sh
# tests/bench/bench_smtp.sh — the dispatcher's email throughput against postfix's smtp-sink, beside
# postfix's own smtp-source driving the same sink with the same number of connections in the same
# run. nudge's figure covers the whole path: claiming rows from PostgreSQL, the policy check,
# rendering, the smtp plugin (libESMTP on the sender threads) and writing every result back.
#
#   MESSAGES   messages each side sends (default 100000)
#   SIZE       message size in bytes (default 10240)
#   CONNS      SMTP connections, both sides (default 4)
#
# Goal: nudge ≥ 0.7 × smtp-source.
set -eu
cd "$(dirname "$0")/../.."
top=$(pwd)
MESSAGES=${MESSAGES:-100000}
SIZE=${SIZE:-10240}
CONNS=${CONNS:-4}
work=$(mktemp -d /tmp/nudge-bench-smtp-XXXXXX)
sinkpid=""
nudgepid=""
cleanup() {
	[ -n "$nudgepid" ] && kill "$nudgepid" 2>/dev/null && wait "$nudgepid" 2>/dev/null || true
	[ -n "$sinkpid" ] && kill "$sinkpid" 2>/dev/null || true
	tests/pg.sh stop "$work/pg" >/dev/null 2>&1 || true
	[ -n "${KEEP:-}" ] || rm -rf "$work"
}
trap cleanup EXIT

now_ms() { date +%s%3N; }
port=$(( 20000 + $(od -An -N2 -tu2 /dev/urandom | tr -d ' ') % 40000 ))
if [ "$(id -u)" -eq 0 ]; then sinkuser="-u nobody"; else sinkuser=""; fi
# shellcheck disable=SC2086
/usr/sbin/smtp-sink $sinkuser 127.0.0.1:$port 1024 &
sinkpid=$!
sleep 0.3

echo "messages: $MESSAGES of $SIZE bytes, $CONNS connections, sink: smtp-sink 127.0.0.1:$port"

# The baseline: smtp-source, one session per connection kept open (-d), as nudge keeps them. It
# runs before nudge and again after (nudge stopped), and nudge is compared with the mean of the
# two: this machine's speed drifts by a third within minutes, and a baseline taken on one side
# only credits or blames nudge for the drift.
src="/usr/sbin/smtp-source -s $CONNS -l $SIZE -m $MESSAGES -d -f shop@example.com -t to@example.org 127.0.0.1:$port"
echo "baseline: $src"
baseline_ms() {
	b0=$(now_ms)
	$src >&2
	b1=$(now_ms)
	echo $((b1 - b0))
}
base1_ms=$(baseline_ms)

conninfo=$(tests/pg.sh start "$work/pg")
.build/nudge migrate --conninfo "$conninfo" >/dev/null 2>&1
psql "$conninfo" -qAt -v ON_ERROR_STOP=1 -c "
	WITH c AS (INSERT INTO customers (email) SELECT 'b' || g || '@example.org'
	           FROM generate_series(1, $MESSAGES) g RETURNING id)
	INSERT INTO messages (customer_id, channel, template, purpose, next_attempt_at, data)
	SELECT id, 'email', 'bench', 'transactional', now(),
	       jsonb_build_object('subject', 'bench ' || id,
	                          'text', left(repeat(md5(id::text) || E'\n', $SIZE / 66 + 1), $SIZE / 2))
	FROM c" -c "VACUUM ANALYZE customers" -c "VACUUM ANALYZE messages" >/dev/null
# The message: the stored text as the plain part and again as the HTML part, about SIZE bytes.
mkdir -p "$work/templates"
cat >"$work/templates/bench.liquid" <<'EOF'
---
channel: email
purpose: transactional
subject: "{{ subject }}"
layout: none
---
{% part html %}<pre>{{ text }}</pre>{% endpart %}
{% part text %}{{ text }}{% endpart %}
EOF
# Due now: the daemon claims them as soon as it starts, and the clock starts with its first
# claim (below). Queuing them for later and making them due with one UPDATE, as this bench once
# did, left 100,000 dead row versions behind for the run to trip over: a cost no outbox that
# workflows fill as they go ever has.
cat >"$work/nudge.conf.lua" <<EOF
return {
  database = { conninfo = [[$conninfo]], pool_size = 4 },
  http = { listen = "127.0.0.1:$(( 20000 + $(od -An -N2 -tu2 /dev/urandom | tr -d ' ') % 40000 ))" },
  log = { level = "warn" },
  paths = { plugins = "$top/.build/plugins", workflows = "$work/wf", templates = "$work/templates" },
  unsubscribe = { secret = "bench" },
  senders = { threads = $CONNS },
  dispatch = { batch = 512 },
  channels = { { name = "email", plugin = "smtp", concurrency = 2048, config = {
    host = "127.0.0.1", port = $port, starttls = "off", from = "shop@example.com",
    connections = $CONNS, messages_per_session = 100 } } },
}
EOF
mkdir -p "$work/wf"
.build/nudge serve --config "$work/nudge.conf.lua" 2>"$work/nudge.log" &
nudgepid=$!
echo "$nudgepid" >"$work/nudge.pid"
sleep 1
# nudge's time is the database's: from its first claim (the earliest attempt's start) to the
# last result recorded (sent_at), so neither the daemon's start nor how often this script looks
# counts. It looks twice a second with PostgreSQL's own psql (Debian's psql is a Perl wrapper that
# costs CPU the daemon then lacks).
pgpsql=$(ls /usr/lib/postgresql/*/bin/psql 2>/dev/null | sort -V | tail -n 1)
[ -n "$pgpsql" ] || pgpsql=psql
# The check reads the two partial indexes of due and leased messages, not the whole table: a count
# of 100,000 rows of 10 KB every half second took PostgreSQL about 80 ms each time.
while :; do
	left=$("$pgpsql" "$conninfo" -qAt -c "SELECT EXISTS (SELECT 1 FROM messages WHERE status IN ('queued', 'retry'))
		OR EXISTS (SELECT 1 FROM messages WHERE status = 'sending')")
	[ "$left" = f ] && break
	kill -0 "$nudgepid" 2>/dev/null || { cat "$work/nudge.log"; exit 1; }
	sleep 0.5
done
t0=$("$pgpsql" "$conninfo" -qAt -c "SELECT (extract(epoch FROM min(started_at)) * 1000)::bigint FROM message_attempts")
t1=$("$pgpsql" "$conninfo" -qAt -c "SELECT (extract(epoch FROM max(sent_at)) * 1000)::bigint FROM messages")
nudge_ms=$((t1 - t0))
ok=$(psql "$conninfo" -qAt -c "SELECT count(*) FROM messages WHERE status = 'sent'")
echo "nudge:    .build/nudge serve (dispatcher + smtp plugin, concurrency 2048, $CONNS connections);" \
	"$ok of $MESSAGES sent"
if [ "$ok" -ne "$MESSAGES" ]; then
	echo "not every message was sent; the daemon's last words:" >&2
	tail -5 "$work/nudge.log" >&2
	exit 1
fi
kill "$nudgepid" 2>/dev/null && wait "$nudgepid" 2>/dev/null || true
nudgepid=""
base2_ms=$(baseline_ms)
awk -v n="$MESSAGES" -v b1="$base1_ms" -v b2="$base2_ms" -v d="$nudge_ms" 'BEGIN {
	r1 = n * 1000 / b1; r2 = n * 1000 / b2; rb = (r1 + r2) / 2; rd = n * 1000 / d;
	printf "smtp-source: %d messages in %.2f s = %.0f msg/s before, %.2f s = %.0f msg/s after\n",
	       n, b1 / 1000, r1, b2 / 1000, r2;
	printf "nudge:       %d messages in %.2f s = %.0f msg/s\n", n, d / 1000, rd;
	printf "ratio nudge / smtp-source = %.2f against their mean (%.2f–%.2f against each; goal >= 0.70)\n",
	       rd / rb, rd / (r1 > r2 ? r1 : r2), rd / (r1 > r2 ? r2 : r1) }'
