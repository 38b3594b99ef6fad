#!/bin/sh
# tests/fuzz/seed_liquid.sh CORPUS — seeds the Liquid fuzzer with the shipped templates and, when
# python3 is at hand, every template of the liquid-spec basics suite.
set -u
out=$1
cd "$(dirname "$0")/../.."
for f in templates/*.liquid templates/partials/*.liquid templates/layouts/*.liquid; do
	[ -e "$f" ] && cp "$f" "$out/tmpl_$(basename "$f")"
done
spec=../shared/liquid-spec/basics.json
if [ -f "$spec" ] && command -v python3 >/dev/null 2>&1; then
	python3 - "$spec" "$out" <<'PY'
import json, sys
for i, c in enumerate(json.load(open(sys.argv[1]))):
    with open("%s/spec_%04d" % (sys.argv[2], i), "wb") as f:
        f.write(c["template"].encode() + b"\0" + json.dumps(c["environment"]).encode())
PY
fi
exit 0
