#!/usr/bin/env bash
# After `make build`, building again must compile nothing: `make demo` and
# `make gallery` run the binaries `make build` made, and a warm run of them
# must spend its time on the demo, not on the compiler. Fails naming every
# crate cargo would compile again (a feature set resolved differently, a
# build script that reruns every time, a file touched by the build).
set -euo pipefail
cd "$(dirname "$0")/.."
stale=$(cargo build --workspace --bins --message-format=json 2>/dev/null | python3 -c '
import json, sys
for line in sys.stdin:
    try:
        msg = json.loads(line)
    except ValueError:
        continue
    if msg.get("reason") == "compiler-artifact" and not msg.get("fresh", False):
        print(msg["target"]["name"])
')
if [ -n "$stale" ]; then
  echo "warm-check: a second 'cargo build --workspace --bins' compiled again:" >&2
  echo "$stale" | sed 's/^/  /' >&2
  exit 1
fi
echo "warm-check: a second build compiles nothing"
