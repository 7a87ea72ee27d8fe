#!/usr/bin/env bash
# worker/image-libs.sh TARGETARCH OUTDIR
#
# Puts libheif.so.1 and every shared library it needs at run time that the
# worker's base image (gcr.io/distroless/cc-debian12) lacks into
# OUTDIR/usr/lib/<triplet>/, for TARGETARCH arm64 or amd64. The worker loads
# libheif with dlopen to decode HEIC/HEIF (libde265) and AVIF (dav1d, aom).
#
# Closure (Debian 12's Depends, followed to the end):
#   libheif1    -> libaom3 libdav1d6 libde265-0 libx265-199 zlib1g
#                  (+ libc6 libgcc-s1 libstdc++6: in the base image)
#   libx265-199 -> libnuma1
#   libde265-0, libaom3, libdav1d6, libnuma1, zlib1g -> only libc6 / libgcc-s1
#                  / libstdc++6
# cc-debian12 is base-debian12 (libc6, libssl3, ca-certificates, tzdata,
# netbase, base-files) plus libgcc-s1, libgomp1, libstdc++6 and gcc-12-base;
# it has no zlib1g (cc-debian13 does). See cc/config.bzl and base/config.bzl
# in GoogleContainerTools/distroless.
#
# Each .deb is pinned by exact version and SHA-256 (from Debian 12's package
# indexes; libaom3 and libde265-0 are the bookworm-security builds). The
# script needs curl, sha256sum and dpkg-deb, and no multiarch: it downloads
# by URL from deb.debian.org and, when a pinned version has left the mirror,
# from snapshot.debian.org at SNAPSHOT (a moment when all pins were current).
#
# IMAGE_LIBS_CACHE=DIR keeps the downloaded .deb files there, by file name,
# and reuses them after checking their SHA-256 again. Without it, downloads go
# to a temporary directory that is removed at exit.
#
# To move a pin: `apt-cache show --no-all-versions PKG:ARCH` on Debian 12
# (after `dpkg --add-architecture arm64 && apt-get update` for arm64) gives
# Version, Filename and SHA256; then run scripts/check-worker-image-libs.sh.
set -euo pipefail

usage() { echo "usage: $0 arm64|amd64 OUTDIR" >&2; exit 2; }
(($# == 2)) || usage
arch=$1
out=$2
case "$arch" in
  arm64) triplet=aarch64-linux-gnu ;;
  amd64) triplet=x86_64-linux-gnu ;;
  *) usage ;;
esac

MIRROR=https://deb.debian.org
SNAPSHOT=20261129T000000Z

# arch  package  version  path in the archive  sha256
# (pool/updates/... is the debian-security archive, pool/main/... debian)
PINS="
arm64 libheif1 1.15.1-1+deb12u1 pool/main/libh/libheif/libheif1_1.15.1-1+deb12u1_arm64.deb 92dddfa77e4281997af385cb2bc9e8ffa13b0876f889a3d6d6ad177ac968a2bc
arm64 libde265-0 1.0.11-1+deb12u3 pool/updates/main/libd/libde265/libde265-0_1.0.11-1+deb12u3_arm64.deb 8b49a68b62db516ed18f5990e192e603706f51d994ceb7bfe30080a6871e0cab
arm64 libx265-199 3.5-2+b1 pool/main/x/x265/libx265-199_3.5-2+b1_arm64.deb 3142b9c9fb005013cee57abee51abbd78ca0a693fc61aa252fefd5be5d074b03
arm64 libnuma1 2.0.16-1 pool/main/n/numactl/libnuma1_2.0.16-1_arm64.deb b4ed2547f387eb2e97d13c0b423b034d2a4d052b2131dfe043e45a84915452c5
arm64 libaom3 3.6.0-1+deb12u3 pool/updates/main/a/aom/libaom3_3.6.0-1+deb12u3_arm64.deb ddf3745b08f612ba9cc290cb874f28f756b37b56ede4b3aaee6230803dad7f29
arm64 libdav1d6 1.0.0-2+deb12u1 pool/main/d/dav1d/libdav1d6_1.0.0-2+deb12u1_arm64.deb 579c820b80ce3491143c411a342b3a222ce3a381c7c052e8c8501de5bace954f
arm64 zlib1g 1:1.2.13.dfsg-1 pool/main/z/zlib/zlib1g_1.2.13.dfsg-1_arm64.deb 52b8b8a145bbe1956bba82034f77022cbef0c3d0885c9e32d9817a7932fe1913
amd64 libheif1 1.15.1-1+deb12u1 pool/main/libh/libheif/libheif1_1.15.1-1+deb12u1_amd64.deb 13a0a3a6e22ddf5eb891b7c7873ace79f13f2c96473576e5f7da2ae3228a2113
amd64 libde265-0 1.0.11-1+deb12u3 pool/updates/main/libd/libde265/libde265-0_1.0.11-1+deb12u3_amd64.deb 72c3edb400c3494974181e9ca75a11d859c715c9685c38fb251783c7c8841afe
amd64 libx265-199 3.5-2+b1 pool/main/x/x265/libx265-199_3.5-2+b1_amd64.deb 9cd87d1b0c56f34f51bcbe8bdb55ebb45dd08ce6c0c6ff2dc77378bac3f64cc0
amd64 libnuma1 2.0.16-1 pool/main/n/numactl/libnuma1_2.0.16-1_amd64.deb 639e1ab6bd66ead40db8a22c332d7199679fa22db261cac34444eb8eb4c17dda
amd64 libaom3 3.6.0-1+deb12u3 pool/updates/main/a/aom/libaom3_3.6.0-1+deb12u3_amd64.deb 0d306f250a365d5309f0f616c5327ebe7cb80cc48332dd3a7fe18c036056f874
amd64 libdav1d6 1.0.0-2+deb12u1 pool/main/d/dav1d/libdav1d6_1.0.0-2+deb12u1_amd64.deb 197f08108242177aeae4c04aac11825c39b7d18598191ab769f910687ccb387f
amd64 zlib1g 1:1.2.13.dfsg-1 pool/main/z/zlib/zlib1g_1.2.13.dfsg-1_amd64.deb d7dd1d1411fedf27f5e27650a6eff20ef294077b568f4c8c5e51466dc7c08ce4
"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cache=${IMAGE_LIBS_CACHE:-$work/debs}
mkdir -p "$cache" "$out/usr/lib/$triplet"

verified() { echo "$2  $1" | sha256sum --check --status; }

# fetch PATH SHA256 -> prints the local .deb, downloading it unless cached.
fetch() {
  local path=$1 sum=$2 deb archive url
  deb=$cache/${path##*/}
  if [[ -f $deb ]] && verified "$deb" "$sum"; then
    echo "$deb"
    return
  fi
  archive=debian
  [[ $path == pool/updates/* ]] && archive=debian-security
  # The mirror; for a security build also the main archive, which takes it in
  # at the next point release; then the snapshot (untested from here).
  local urls=("$MIRROR/$archive/$path")
  [[ $archive == debian-security ]] && urls+=("$MIRROR/debian/pool/${path#pool/updates/}")
  urls+=("https://snapshot.debian.org/archive/$archive/$SNAPSHOT/$path")
  for url in "${urls[@]}"; do
    echo "image-libs: downloading $url" >&2
    if curl -fsSL --retry 3 -o "$deb.part" "$url"; then
      if verified "$deb.part" "$sum"; then
        mv "$deb.part" "$deb"
        echo "$deb"
        return
      fi
      echo "image-libs: SHA-256 mismatch for $url" >&2
    fi
    rm -f "$deb.part"
  done
  echo "image-libs: could not fetch ${path##*/} with SHA-256 $sum" >&2
  return 1
}

count=0 bytes=0
while read -r a pkg version path sum; do
  [[ $a == "$arch" ]] || continue
  deb=$(fetch "$path" "$sum")
  rm -rf "$work/x"
  dpkg-deb -x "$deb" "$work/x"
  # Shared objects only (real files and SONAME links); some bookworm
  # packages (zlib1g) still install under /lib rather than /usr/lib.
  libs=()
  for dir in "$work/x/usr/lib/$triplet" "$work/x/lib/$triplet"; do
    [[ -d $dir ]] || continue
    while IFS= read -r -d '' f; do libs+=("$f"); done \
      < <(find "$dir" -maxdepth 1 -name '*.so.*' \( -type f -o -type l \) -print0)
  done
  ((${#libs[@]})) || { echo "image-libs: no shared object in ${path##*/}" >&2; exit 1; }
  cp -P -t "$out/usr/lib/$triplet/" "${libs[@]}"
  for f in "${libs[@]}"; do
    [[ -L $f ]] || bytes=$((bytes + $(stat -c %s "$f")))
  done
  echo "image-libs: $arch $pkg $version"
  count=$((count + 1))
done <<<"$PINS"
((count > 0)) || { echo "image-libs: no pins for $arch" >&2; exit 1; }

echo "image-libs: $arch: $count packages, copied $bytes bytes ($(awk -v b="$bytes" 'BEGIN {printf "%.1f", b / 1048576}') MiB) in $out/usr/lib/$triplet"
