#!/bin/sh
# contrib/demo.sh — what `make demo` runs: a private PostgreSQL under .work/demo, `nudge migrate`,
# `nudge serve` with contrib/nudge.conf.lua on a free loopback port, then it shows the daemon at work.
# On a terminal it keeps running until Ctrl-C; otherwise it stops by itself once it has shown all.
set -eu
cd "$(dirname "$0")/.."
top=$(pwd)
work="$top/.work/demo"
mkdir -p "$work"

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

pid=""
stop_all() {
	if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
		say "stopping nudge (SIGTERM: it drains and exits)"
		kill -TERM "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null && echo "nudge exited with status 0" || echo "nudge exited with status $?"
	fi
	tests/pg.sh stop "$work/pg" >/dev/null 2>&1 || true
}
trap stop_all EXIT
trap 'exit 0' INT TERM

say "starting a private PostgreSQL in $work/pg"
conninfo=$(tests/pg.sh start "$work/pg")
echo "$conninfo"
export NUDGE_DATABASE="$conninfo"
# Until the smtp plugin is configured, email goes to this file (the file plugin).
export NUDGE_OUTBOX="$work/outbox.txt"

say "nudge migrate"
build/nudge migrate --config contrib/nudge.conf.lua

# A free port: ask the kernel by binding port 0 with the daemon's own listener is not possible
# before it starts, so pick a random high port and let the daemon refuse it if taken.
port=$(( 20000 + $(od -An -N2 -tu2 /dev/urandom | tr -d ' ') % 40000 ))
export NUDGE_LISTEN="127.0.0.1:$port"

say "nudge config check contrib/nudge.conf.lua"
build/nudge config check contrib/nudge.conf.lua

say "nudge serve --config contrib/nudge.conf.lua (listening on $NUDGE_LISTEN)"
build/nudge serve --config contrib/nudge.conf.lua 2>"$work/nudge.log" &
pid=$!
for _ in $(seq 1 100); do
	curl -fsS "http://$NUDGE_LISTEN/healthz" >/dev/null 2>&1 && break
	kill -0 "$pid" 2>/dev/null || { cat "$work/nudge.log"; exit 1; }
	sleep 0.1
done

say "GET /healthz"
curl -sS "http://$NUDGE_LISTEN/healthz"
echo

say "nudge workflows list (deployed by the daemon at start)"
build/nudge workflows list --config contrib/nudge.conf.lua 2>/dev/null || true

say "nudge simulate abandoned_cart: a shopper leaves a checkout (virtual clock, nothing is sent)"
echo "customer: $(tr -d '\n' <contrib/demo/customer.json)"
build/nudge simulate abandoned_cart --customer contrib/demo/customer.json \
	--events contrib/demo/events.json --for 2d --conninfo "$NUDGE_DATABASE" 2>/dev/null

say "the daemon's log so far"
cat "$work/nudge.log"

if [ -t 0 ]; then
	say "nudge is running on http://$NUDGE_LISTEN — press Ctrl-C to stop it"
	tail -n 0 -f "$work/nudge.log" &
	tailpid=$!
	wait "$pid" || true
	kill "$tailpid" 2>/dev/null || true
fi
