#!/bin/sh
# tests/chaos/run.sh — what `make chaos` runs: every tests/chaos/chaos_*.sh in name order. Each
# starts its own private PostgreSQL (tests/pg.sh), prints what it did and the figures it measured,
# and ends with "N passed, M failed". CHAOS=NAME runs only chaos_NAME.sh.
set -u
cd "$(dirname "$0")/../.."
status=0
for c in tests/chaos/chaos_*.sh; do
	[ -e "$c" ] || continue
	name=$(basename "$c" .sh)
	name=${name#chaos_}
	if [ -n "${CHAOS:-}" ] && [ "$CHAOS" != "$name" ]; then
		continue
	fi
	printf '\n== chaos %s\n' "$name"
	sh "$c" || { echo "chaos $name: FAILED"; status=1; }
done
exit $status
