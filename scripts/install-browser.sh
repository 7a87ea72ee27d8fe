#!/usr/bin/env bash
# Installs what the gallery's browser tests drive: Debian's Chromium and
# ChromeDriver (/usr/bin/chromium, /usr/bin/chromedriver). Does nothing when
# both are there. Needs root, or sudo.
set -euo pipefail
if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
  exit 0
fi
if ! command -v apt-get >/dev/null; then
  echo "install-browser: no apt-get here; install Chromium and a matching ChromeDriver at /usr/bin/chromium and /usr/bin/chromedriver" >&2
  exit 1
fi
run=()
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "install-browser: needs root or sudo to apt-get install chromium chromium-driver" >&2; exit 1; }
  run=(sudo)
fi
echo "installing Debian's chromium and chromium-driver (for the gallery's browser tests)…"
"${run[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${run[@]}" apt-get install -y -qq chromium chromium-driver >/dev/null
/usr/bin/chromium --version
/usr/bin/chromedriver --version
