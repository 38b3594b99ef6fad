#!/bin/sh
# tests/bench/bench_liquid.sh — renders/s of the cart-reminder email (HTML + text, 5-item cart) on
# one thread, against the ideal rate of copying the same bytes (tests/bench/liquid_bench.c).
# Fails when under the goal of 50,000 renders/s. BENCH_SECONDS (default 3) per measurement.
set -u
cd "$(dirname "$0")/../.."
[ -f .build/libnudge.a ] || make --no-print-directory build >/dev/null || exit 1
pkgs="libuv libpq lua5.4 libcurl jansson openssl libesmtp-1.0"
mkdir -p .build/bench
cmd="cc -std=c11 -D_GNU_SOURCE -O2 -Icore -Icore/include $(pkg-config --cflags $pkgs) -o .build/bench/liquid_bench tests/bench/liquid_bench.c .build/libnudge.a $(pkg-config --libs $pkgs) -lhttp_parser -lpthread -lm -ldl"
echo "# $cmd"
# shellcheck disable=SC2086
$cmd || exit 1
echo "# .build/bench/liquid_bench . ${BENCH_SECONDS:-3}"
.build/bench/liquid_bench . "${BENCH_SECONDS:-3}"
