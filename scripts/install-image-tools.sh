#!/usr/bin/env bash
# Installs what builds and runs the worker image without a Docker daemon,
# and runs arm64 binaries on an amd64 host: Debian's umoci (assembles the
# OCI image), skopeo (copies it to ECR), podman and runc (run it; Debian 12's
# crun refuses hybrid cgroups), qemu-user-static with binfmt-support (arm64
# emulation), and libc6-arm64-cross (an arm64 glibc for running the Lambda's
# bootstrap outside a container). Then registers qemu-aarch64 with the kernel's
# binfmt_misc, mounting it first if needed, and runs an arm64 program to
# prove it. Needs root, or sudo.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-debian-packages.sh "worker image and arm64 emulation" \
  umoci skopeo podman runc qemu-user-static binfmt-support libc6-arm64-cross binutils

[[ $(uname -m) == aarch64 ]] && exit 0
run=()
[[ $(id -u) -eq 0 ]] || run=(sudo)
binfmt=/proc/sys/fs/binfmt_misc
if [[ ! -e $binfmt/register ]]; then
  "${run[@]}" mount -t binfmt_misc binfmt_misc "$binfmt" ||
    { echo "install-image-tools: cannot mount $binfmt; arm64 containers cannot run here" >&2; exit 1; }
fi
[[ -e $binfmt/qemu-aarch64 ]] || "${run[@]}" update-binfmts --enable qemu-aarch64
probe=/usr/aarch64-linux-gnu/lib/ld-linux-aarch64.so.1
version=$("$probe" --version) || { echo "install-image-tools: $probe (arm64) does not run through binfmt_misc" >&2; exit 1; }
echo "install-image-tools: arm64 programs run here (${version%%$'\n'*})"
