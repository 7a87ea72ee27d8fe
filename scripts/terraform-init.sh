# Sourced by scripts/deploy.sh and scripts/destroy.sh: `terraform init` of
# infra/ against the registry, for the platform this runs on.
#
# infra/.terraform.lock.hcl is committed with the checksum of linux_amd64, the
# platform `make infra-check` validates offline. On any other platform (macOS,
# linux_arm64) init would refuse the provider it downloads for want of a
# recorded checksum, so the platform's checksums are added first with
# `terraform providers lock`, which verifies them against the registry's
# signed checksum list.

# terraform_init <config dir>
terraform_init() {
  local dir=$1 platform
  platform="$(terraform version -json | jq -r .platform)"
  if [[ $platform != linux_amd64 ]]; then
    terraform -chdir="$dir" providers lock -platform="$platform" >/dev/null
  fi
  terraform -chdir="$dir" init -input=false >/dev/null
}
