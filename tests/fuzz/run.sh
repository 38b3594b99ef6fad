#!/bin/sh
# tests/fuzz/run.sh — what `make fuzz` runs: builds every tests/fuzz/fuzz_*.c as a libFuzzer target
# (clang -fsanitize=fuzzer,address,undefined, linked with the core sources) and runs each for
# FUZZ_SECONDS (default 600) with its corpus seeded from tests/fuzz/corpus_NAME/ (the seed script
# tests/fuzz/seed_NAME.sh, when present, fills it first). FUZZ=NAME runs only fuzz_NAME.c.
set -u
cd "$(dirname "$0")/../.."
secs=${FUZZ_SECONDS:-600}
out=.build-fuzz
mkdir -p "$out"
# clang is an optional dependency, for fuzzing only: installed here when missing.
if ! command -v clang >/dev/null && [ "$(id -u)" -eq 0 ]; then
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends clang >/dev/null ||
		{ apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends clang >/dev/null; }
fi
command -v clang >/dev/null || { echo "fuzz: clang is missing (apt-get install clang)"; exit 1; }
pkgs="libuv libpq lua5.4 libcurl jansson openssl libesmtp-1.0"
cflags="-g -O1 -std=c11 -D_GNU_SOURCE -fsanitize=fuzzer,address,undefined -Icore -Icore/include $(pkg-config --cflags $pkgs)"
libs="$(pkg-config --libs $pkgs) -lhttp_parser -lpthread -lm -ldl"
# The command line (main.c, cmd_*.c) is not linked: fuzz targets call modules directly.
core=$(ls core/*.c | grep -v -e '^core/main.c$' -e '^core/cmd_')
status=0
for f in tests/fuzz/fuzz_*.c; do
	[ -e "$f" ] || continue
	name=$(basename "$f" .c)
	name=${name#fuzz_}
	if [ -n "${FUZZ:-}" ] && [ "$FUZZ" != "$name" ]; then
		continue
	fi
	corpus="$out/corpus_$name"
	mkdir -p "$corpus"
	[ -d "tests/fuzz/corpus_$name" ] && cp -n tests/fuzz/corpus_$name/* "$corpus"/ 2>/dev/null
	[ -x "tests/fuzz/seed_$name.sh" ] && "tests/fuzz/seed_$name.sh" "$corpus"
	printf '\n== fuzz %s for %ss\n' "$name" "$secs"
	# shellcheck disable=SC2086
	clang $cflags -o "$out/fuzz_$name" "$f" $core $libs || { status=1; continue; }
	"$out/fuzz_$name" -max_total_time="$secs" -timeout=10 -rss_limit_mb=4096 "$corpus" \
		>"$out/fuzz_$name.log" 2>&1 || { tail -40 "$out/fuzz_$name.log"; status=1; continue; }
	tail -3 "$out/fuzz_$name.log"
	echo "fuzz $name: clean for ${secs}s"
done
exit $status
