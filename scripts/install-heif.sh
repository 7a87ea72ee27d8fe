#!/usr/bin/env bash
# Installs what HEIC/HEIF and AVIF need on this machine: Debian's libheif1
# (libheif.so.1, which the worker loads at run time to decode them; the
# tests and the local stack's worker use it) and libheif-examples (heif-enc,
# with which `make bench` encodes a 48-megapixel HEIC). Does nothing when
# both are there. Needs root, or sudo.
set -euo pipefail
have_library() { ldconfig -p 2>/dev/null | grep -q 'libheif\.so\.1 '; }
if have_library && command -v heif-enc >/dev/null; then
  exit 0
fi
if ! command -v apt-get >/dev/null; then
  echo "install-heif: no apt-get here; install libheif 1.x (libheif.so.1, with its HEVC and AV1 decoders) and heif-enc" >&2
  exit 1
fi
run=()
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "install-heif: needs root or sudo to apt-get install libheif1 libheif-examples" >&2; exit 1; }
  run=(sudo)
fi
echo "installing Debian's libheif1 and libheif-examples (HEIC/HEIF and AVIF decoding; heif-enc for the bench)…"
"${run[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${run[@]}" apt-get install -y -qq libheif1 libheif-examples >/dev/null
have_library || { echo "install-heif: libheif.so.1 is still not in the loader's cache" >&2; exit 1; }
echo "install-heif: libheif.so.1 and heif-enc installed"
