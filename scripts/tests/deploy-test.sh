#!/usr/bin/env bash
# Offline tests of scripts/deploy.sh's prerequisites: a deploy builds the
# worker image with umoci and pushes it with skopeo (no Docker daemon), so
# each missing tool must stop it before anything runs, naming how to get it.
# The script runs from a copy of scripts/, with a PATH holding only stand-ins
# and the few real tools it needs before that check.
#
#   scripts/tests/deploy-test.sh
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/stack/scripts" "$tmp/stack/infra" "$tmp/stack/.venv/bin" "$tmp/real"
cp "$root/scripts/deploy.sh" "$root/scripts/terraform-init.sh" "$tmp/stack/scripts/"
for tool in dirname jq git cargo; do
  ln -s "$(command -v "$tool")" "$tmp/real/$tool"
done
stub() {
  printf '#!/bin/sh\necho "%s $*" >>"%s/calls"\nexit 0\n' "$2" "$tmp" >"$1/$2"
  chmod +x "$1/$2"
}

failures=0
# run_case NAME EXPECTED-MESSAGE TOOL...: the stand-ins on PATH are TOOL...
run_case() {
  local name=$1 expected=$2 bin="$tmp/bin-$1" status out
  shift 2
  mkdir -p "$bin"
  for tool in "$@"; do stub "$bin" "$tool"; done
  rm -f "$tmp/calls"
  status=0
  out="$(PATH="$bin:$tmp/real" /bin/bash "$tmp/stack/scripts/deploy.sh" --yes 2>&1)" || status=$?
  if [[ $status -ne 1 || $out != *"$expected"* || -s "$tmp/calls" ]]; then
    echo "FAIL $name: exit $status, calls: $(cat "$tmp/calls" 2>/dev/null)"
    echo "$out" | sed 's/^/  /'
    failures=$((failures + 1))
  else
    echo "ok   $name"
  fi
}

run_case a_deploy_without_umoci_stops_naming_make_image_tools \
  "deploy: umoci is required: run 'make image-tools'" terraform aws
run_case a_deploy_without_skopeo_stops_naming_make_image_tools \
  "deploy: skopeo is required: run 'make image-tools'" terraform aws umoci
run_case a_deploy_without_cargo_lambda_stops_naming_make_setup \
  "deploy: cargo-lambda is required: run 'make setup'" terraform aws umoci skopeo

if ((failures)); then
  echo "deploy-test: $failures case(s) failed" >&2
  exit 1
fi
echo "deploy-test: all cases passed"
