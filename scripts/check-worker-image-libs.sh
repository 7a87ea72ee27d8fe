#!/usr/bin/env bash
# Checks what worker/image-libs.sh adds to the worker image, for arm64 and
# amd64: libheif.so.1 is there and built for the right machine, and every
# NEEDED entry of every library it copies is met by another copied library
# (by SONAME) or by the base image (BASE_IMAGE_LIBS below). Prints the size
# each architecture adds. Needs readelf (binutils; it reads either
# architecture) and deb.debian.org; the .deb files are kept in
# target/image-libs-cache/, so a second run downloads nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

# What gcr.io/distroless/cc-debian12 already provides: libc6 (glibc: libc,
# libm, libdl, libpthread, librt and the dynamic loader), libgcc-s1,
# libstdc++6 and libgomp1. Source: BASE_PACKAGES["debian12"] in base/config.bzl
# and CC_PACKAGES["debian12"] in cc/config.bzl of GoogleContainerTools/distroless.
# Patterns, as in a shell `case`.
BASE_IMAGE_LIBS=(
  libc.so.6 libm.so.6 libdl.so.2 libpthread.so.0 librt.so.1 'ld-linux-*.so.*'
  libgcc_s.so.1 libstdc++.so.6 libgomp.so.1
)

export IMAGE_LIBS_CACHE=$PWD/target/image-libs-cache
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

in_base_image() {
  local pattern
  for pattern in "${BASE_IMAGE_LIBS[@]}"; do
    # shellcheck disable=SC2053 # the pattern is meant to glob
    [[ $1 == $pattern ]] && return 0
  done
  return 1
}

failures=0
fail() {
  echo "check-worker-image-libs: FAIL: $*" >&2
  failures=$((failures + 1))
}

summary=()
for arch in arm64 amd64; do
  case "$arch" in
    arm64) triplet=aarch64-linux-gnu machine=AArch64 ;;
    amd64) triplet=x86_64-linux-gnu machine=X86-64 ;;
  esac
  worker/image-libs.sh "$arch" "$tmp/$arch" | tee "$tmp/$arch.log"
  lib=$tmp/$arch/usr/lib/$triplet

  # The SONAME of every copied library, each reachable under that name.
  declare -A soname=()
  for f in "$lib"/*; do
    [[ -f $f && ! -L $f ]] || continue
    s=$(readelf -d "$f" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
    [[ -n $s ]] || { fail "$arch: ${f##*/} has no SONAME"; continue; }
    [[ -e $lib/$s ]] || fail "$arch: ${f##*/}: no file or link named $s"
    soname[$s]=1
  done

  for f in "$lib"/*; do
    [[ -f $f && ! -L $f ]] || continue
    while read -r needed; do
      [[ -n ${soname[$needed]:-} ]] || in_base_image "$needed" ||
        fail "$arch: ${f##*/} needs $needed: neither copied nor in cc-debian12"
    done < <(readelf -d "$f" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')
  done
  unset soname

  if [[ ! -e $lib/libheif.so.1 ]]; then
    fail "$arch: libheif.so.1 missing"
  elif ! readelf -h "$lib/libheif.so.1" | grep -Eq "Machine:.*$machine\$"; then
    fail "$arch: libheif.so.1 is not an $machine ELF: $(readelf -h "$lib/libheif.so.1" | grep Machine:)"
  fi
  # On the host's own architecture, load the copied libheif with only the
  # copied libraries and the host's glibc/libstdc++, and ask for both decoders.
  if [[ $(uname -m) == "${triplet%%-*}" ]] && [[ -e $lib/libheif.so.1 ]]; then
    LD_LIBRARY_PATH=$lib python3 - "$lib/libheif.so.1" <<'PY' || fail "$arch: the copied libheif.so.1 does not load or lacks a decoder"
import ctypes, sys
heif = ctypes.CDLL(sys.argv[1])
heif.heif_get_version.restype = ctypes.c_char_p
for compression, name in ((1, "HEVC"), (4, "AV1")):
    if not heif.heif_have_decoder_for_format(compression):
        sys.exit(f"libheif has no {name} decoder")
print(f"libheif {heif.heif_get_version().decode()} loads from the copied libraries and has HEVC and AV1 decoders")
PY
  fi
  summary+=("$(tail -n 1 "$tmp/$arch.log")")
done

printf '%s\n' "${summary[@]}"
if ((failures)); then
  echo "check-worker-image-libs: $failures failure(s)" >&2
  exit 1
fi
echo "check-worker-image-libs: arm64 and amd64 closures complete"
