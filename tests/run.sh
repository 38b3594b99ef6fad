#!/bin/sh
# tests/run.sh BUILD_DIR... — runs every suite against a private PostgreSQL cluster.
#
# For each build directory (.build, .build-asan…) it migrates a fresh database with that build's
# `nudge migrate` and runs every test binary in BUILD/tests/. The normal build's binaries also run
# under valgrind when NG_VALGRIND is not 0. Ends with the line "N passed, M failed".
set -u
cd "$(dirname "$0")/.."
top=$(pwd)

work=$(mktemp -d /tmp/nudge-check.XXXXXX)
pgdir="$work/pg"
cleanup() {
	tests/pg.sh stop "$pgdir" >/dev/null 2>&1
	rm -rf "$work"
}
trap cleanup EXIT INT TERM

conninfo=$(tests/pg.sh start "$pgdir") || {
	echo "run.sh: the test PostgreSQL cluster did not start"
	echo "0 passed, 1 failed"
	exit 1
}
export NUDGE_TEST_PGDIR="$pgdir"
export NUDGE_TEST_TOP="$top"
echo "# PostgreSQL test cluster: $conninfo"

passed=0
failed=0
failures=""
log="$work/out"

# Reads "ok …" / "not ok …" lines from $log and adds them to the totals.
tally() {
	p=$(grep -c '^ok ' "$log")
	f=$(grep -c '^not ok ' "$log")
	passed=$((passed + p))
	failed=$((failed + f))
	if [ "$f" -gt 0 ]; then
		failures="$failures
$(grep '^not ok ' "$log")"
	fi
}

# run_suite LABEL CMD... : runs one test binary, shows its output, tallies it.
run_suite() {
	label=$1
	shift
	"$@" >"$log" 2>&1
	rc=$?
	sed "s/^/[$label] /" "$log"
	tally
	if [ $rc -ne 0 ] && ! grep -q '^not ok ' "$log"; then
		# The binary failed without reporting a failing test (a crash, valgrind): count it.
		echo "not ok $label.$(basename "$2") exited with status $rc" >>"$log"
		failed=$((failed + 1))
		failures="$failures
not ok [$label] $(basename "$2") exited with status $rc"
	fi
}

for build in "$@"; do
	label=$(basename "$build" | sed 's/^\.//')  # .build → build
	# A fresh database per build, migrated by the build's own binary.
	db="nudge_$(echo "$label" | tr -c 'a-z0-9\n' '_')"
	psql -q "$conninfo" -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db" >/dev/null 2>&1
	export NUDGE_TEST_PG=$(echo "$conninfo" | sed "s/dbname=nudge/dbname=$db/")
	if "$build/nudge" migrate --conninfo "$NUDGE_TEST_PG" >"$log" 2>&1; then
		echo "ok $label.migrate" >>"$log"
	else
		echo "not ok $label.migrate" >>"$log"
	fi
	sed "s/^/[$label] /" "$log"
	tally

	for t in "$build"/tests/test_*; do
		[ -x "$t" ] || continue
		run_suite "$label" "$t"
	done

	if [ "$label" = build ] && [ "${NG_VALGRIND:-1}" != 0 ] && command -v valgrind >/dev/null; then
		for name in ${NG_VALGRIND_SUITES-test_config test_clock test_senders test_db test_httpc test_httpd test_plugins test_smtp test_privacy test_policy test_twilio test_liquid test_liquid_spec test_msgtmpl test_messenger test_dispatch test_unsubscribe test_double_opt_in test_complaint test_json_parse test_smtp_socket}; do
			t="$build/tests/$name"
			[ -x "$t" ] || continue
			NG_TEST_TIMEOUT=600 run_suite "valgrind" valgrind -q --error-exitcode=99 \
				--leak-check=full --errors-for-leak-kinds=definite \
				--show-leak-kinds=definite "$t"
		done
	fi
done

if [ -n "$failures" ]; then
	echo "# failures:$failures"
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
