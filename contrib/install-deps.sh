#!/bin/sh
# Installs the Debian 12 packages nudge builds, tests and runs with.
# Run as root (or through sudo). Safe to run again: apt-get skips what is present.
# The README lists why each package is here.
set -eu

PACKAGES="
build-essential
pkg-config
libuv1-dev
libpq-dev
liblua5.4-dev
libcurl4-openssl-dev
libesmtp-dev
libssl-dev
libjansson-dev
libhttp-parser-dev
postgresql
postgresql-contrib
curl
openssl
valgrind
clang
wrk
postfix
"

if [ "$(id -u)" -ne 0 ]; then
	if command -v sudo >/dev/null 2>&1; then
		exec sudo "$0" "$@"
	fi
	echo "install-deps: run as root (apt-get needs it)" >&2
	exit 1
fi

export DEBIAN_FRONTEND=noninteractive
# postfix is here for its smtp-sink and smtp-source tools (demo and benchmark); leave the mail
# system itself unconfigured.
echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections 2>/dev/null || true
apt-get update -q
# shellcheck disable=SC2086
apt-get install -y -q --no-install-recommends $PACKAGES "$@"
