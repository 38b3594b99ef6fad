#!/bin/sh
# Exits 0 when everything contrib/install-deps.sh installs is present, 1 (quietly) otherwise.
command -v cc >/dev/null 2>&1 || exit 1
command -v pkg-config >/dev/null 2>&1 || exit 1
pkg-config --exists libuv libpq lua5.4 libcurl jansson openssl libesmtp-1.0 || exit 1
[ -f /usr/include/http_parser.h ] || exit 1
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || exit 1
command -v valgrind >/dev/null 2>&1 || exit 1
command -v clang >/dev/null 2>&1 || exit 1
command -v wrk >/dev/null 2>&1 || exit 1
command -v curl >/dev/null 2>&1 || exit 1
command -v openssl >/dev/null 2>&1 || exit 1
[ -x /usr/sbin/smtp-sink ] && [ -x /usr/sbin/smtp-source ] || exit 1
exit 0
