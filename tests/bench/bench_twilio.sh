#!/bin/sh
# bench_twilio.sh — SMS throughput through the twilio plugin and the shared HTTP client.
#
# 10,000 messages to the Twilio stand-in (tests/support/twilio_standin.c), which answers every
# request after 100 ms; the plugin keeps 50 requests in flight and has no rate limit. The baseline
# is the ideal for that set-up, concurrency / latency = 500 msgs/s; the figure is the measured rate
# and its ratio to the ideal. Override with BENCH_TWILIO="N LATENCY_MS CONCURRENCY".
set -eu
cd "$(dirname "$0")/../.."
[ -x .build/nudge ] || make --no-print-directory build >/dev/null
out=.build/bench/bench_twilio
mkdir -p .build/bench
PKGS="libuv libpq lua5.4 libcurl jansson openssl"
cmd="cc -std=c11 -D_GNU_SOURCE -O2 -Icore -Icore/include -Itests $(pkg-config --cflags $PKGS) \
tests/bench/bench_twilio.c tests/support/twilio_standin.c .build/libnudge.a \
$(pkg-config --libs $PKGS) -lhttp_parser -lpthread -lm -ldl -o $out"
echo "# $cmd" | tr -s ' '
$cmd
set -- ${BENCH_TWILIO:-10000 100 50}
echo "# $out $* .build/plugins"
"$out" "$@" .build/plugins
