#!/bin/sh
# tests/pg.sh — a private PostgreSQL cluster for tests and the demo.
#
#   tests/pg.sh start DIR   initdb (first time) and start a cluster in DIR on a random free loopback
#                           port; prints the conninfo on stdout (also saved in DIR/conninfo)
#   tests/pg.sh restart DIR [SECONDS]
#                           restart it in place (same port); with SECONDS, it stays down that long
#   tests/pg.sh stop DIR    stop it (fast shutdown)
#
# PostgreSQL refuses to run as root, so as root the cluster belongs to the 'postgres' user (created by
# Debian's postgresql package). It listens on 127.0.0.1 only, and its socket lives in DIR.
set -eu

cmd=${1:?usage: tests/pg.sh start|restart|stop DIR}
dir=${2:?usage: tests/pg.sh start|restart|stop DIR}

pgbin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
[ -n "$pgbin" ] && [ -x "$pgbin/initdb" ] || {
	echo "pg.sh: PostgreSQL server binaries not found under /usr/lib/postgresql (run contrib/install-deps.sh)" >&2
	exit 1
}

as_owner() {
	if [ "$(id -u)" -eq 0 ]; then
		runuser -u postgres -- "$@"
	else
		"$@"
	fi
}

# start_on PORT: the cluster in DIR, listening on 127.0.0.1:PORT (its socket in DIR).
start_on() {
	as_owner "$pgbin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
		-o "-p $1 -c listen_addresses=127.0.0.1 -c unix_socket_directories=$dir -c fsync=off -c max_connections=200" \
		start >/dev/null 2>&1
}

case "$cmd" in
start)
	mkdir -p "$dir"
	dir=$(cd "$dir" && pwd)
	if [ "$(id -u)" -eq 0 ]; then
		chown postgres "$dir"
		# postgres must be able to reach DIR through its parents.
		p=$dir
		while [ "$p" != / ]; do
			p=$(dirname "$p")
			chmod o+x "$p" 2>/dev/null || true
		done
	fi
	if [ ! -f "$dir/data/PG_VERSION" ]; then
		as_owner "$pgbin/initdb" -D "$dir/data" -A trust -U postgres -E UTF8 --locale=C.UTF-8 \
			>"$dir/initdb.log" 2>&1 || {
			cat "$dir/initdb.log" >&2
			exit 1
		}
	fi
	tries=0
	while :; do
		port=$(( 20000 + $(od -An -N2 -tu2 /dev/urandom | tr -d ' ') % 40000 ))
		if start_on "$port"; then
			break
		fi
		tries=$((tries + 1))
		if [ $tries -ge 10 ]; then
			echo "pg.sh: could not start PostgreSQL; see $dir/server.log:" >&2
			tail -n 20 "$dir/server.log" >&2
			exit 1
		fi
	done
	as_owner "$pgbin/psql" -q -h 127.0.0.1 -p "$port" -U postgres -d postgres \
		-c "CREATE DATABASE nudge" >/dev/null 2>&1 || true
	echo "host=127.0.0.1 port=$port user=postgres dbname=nudge" >"$dir/conninfo"
	echo "$port" >"$dir/port"
	cat "$dir/conninfo"
	;;
restart)
	# Same port and settings as start; used by tests that survive a server restart.
	if [ -z "${3:-}" ]; then
		as_owner "$pgbin/pg_ctl" -D "$dir/data" -m fast -w restart >/dev/null 2>&1
	else
		# Down for a while, so that clients surely meet the outage (a plain restart can be over
		# between two of their requests).
		as_owner "$pgbin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1
		sleep "$3"
		start_on "$(cat "$dir/port")"
	fi
	;;
stop)
	[ -f "$dir/data/postmaster.pid" ] || exit 0
	as_owner "$pgbin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
	;;
*)
	echo "usage: tests/pg.sh start|restart|stop DIR" >&2
	exit 2
	;;
esac
