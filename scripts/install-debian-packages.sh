#!/usr/bin/env bash
# scripts/install-debian-packages.sh WHAT PACKAGE...
#
# Installs the Debian packages named that are not installed yet, with
# apt-get, after refreshing the package lists (a machine image's lists can
# name security builds the mirror has already dropped). Does nothing, and
# needs no network, when all of them are installed. WHAT says in messages
# what they are for. Needs root, or sudo.
#
# Every check captures a command's whole output before testing it: under
# `set -o pipefail`, `cmd | grep -q` fails at random when grep exits first
# and cmd dies of SIGPIPE.
set -euo pipefail
(($# >= 2)) || { echo "usage: $0 WHAT PACKAGE..." >&2; exit 2; }
what=$1
shift

installed() {
  local status
  status=$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null) || return 1
  [[ $status == installed ]]
}

missing=()
for pkg in "$@"; do
  installed "$pkg" || missing+=("$pkg")
done
((${#missing[@]})) || exit 0

if ! command -v apt-get >/dev/null; then
  echo "install ($what): no apt-get here; install the Debian packages ${missing[*]} or their equivalents" >&2
  exit 1
fi
run=()
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null || { echo "install ($what): needs root or sudo to apt-get install ${missing[*]}" >&2; exit 1; }
  run=(sudo)
fi
echo "install ($what): apt-get install ${missing[*]}"
apt=(env DEBIAN_FRONTEND=noninteractive apt-get -q -o Acquire::Retries=5 -o DPkg::Lock::Timeout=300)
# A mirror answering mid-sync can fail an update: try it three times.
for attempt in 1 2 3; do
  "${run[@]}" "${apt[@]}" update -qq && break
  ((attempt < 3)) || { echo "install ($what): apt-get update failed $attempt times" >&2; exit 1; }
  sleep $((attempt * 10))
done
"${run[@]}" "${apt[@]}" install -y -qq "${missing[@]}" >/dev/null
for pkg in "${missing[@]}"; do
  installed "$pkg" || { echo "install ($what): $pkg is still not installed" >&2; exit 1; }
done
echo "install ($what): ${missing[*]} installed"
