#!/bin/sh
# tests/bench/run.sh — what `make bench` runs: every tests/bench/bench_*.sh in name order.
#
# Each benchmark starts what it needs (a private PostgreSQL through tests/pg.sh, stand-ins, sinks),
# measures its baseline in the same run (pgbench, smtp-source, the ideal rate…), prints its figures
# as ratios against that baseline together with the exact command lines used, and cleans up.
# BENCH=NAME runs only bench_NAME.sh.
set -u
cd "$(dirname "$0")/../.."
status=0
for b in tests/bench/bench_*.sh; do
	[ -e "$b" ] || continue
	name=$(basename "$b" .sh)
	name=${name#bench_}
	if [ -n "${BENCH:-}" ] && [ "$BENCH" != "$name" ]; then
		continue
	fi
	printf '\n== bench %s\n' "$name"
	sh "$b" || { echo "bench $name: FAILED"; status=1; }
done
exit $status
