#!/usr/bin/env bash
# scripts/build-worker-image.sh ARCH...
#
# Builds the worker image for each ARCH (arm64, amd64) into the OCI layout
# target/worker-image/oci, tagged ARCH, with no Docker daemon: the worker
# cross-compiled with zig (cargo-lambda, from .venv) in the workspace's
# release profile, then scripts/worker_image.py lays it over the locked
# Debian packages (worker/image/packages.lock) with umoci. Same inputs, same
# image digest (timestamps are the last commit's).
set -euo pipefail
cd "$(dirname "$0")/.."
(($#)) || { echo "usage: $0 arm64|amd64..." >&2; exit 2; }
for arch in "$@"; do
  case "$arch" in
    arm64) flag=--arm64 ;;
    amd64) flag=--x86-64 ;;
    *) echo "build-worker-image: unknown architecture $arch (arm64, amd64)" >&2; exit 2 ;;
  esac
  # --disable-optimizations: the release profile as declared, without the
  # panic = "abort" cargo-lambda adds for functions.
  # cargo-lambda moves the binary to <lambda-dir>/worker/bootstrap.
  bin_dir=target/worker-image/bin-$arch
  PATH="$PWD/.venv/bin:$PATH" cargo lambda build --release --disable-optimizations "$flag" \
    --lambda-dir "$bin_dir" -p worker
  python3 scripts/worker_image.py build "$arch" "$bin_dir/worker/bootstrap"
done
