#!/usr/bin/env bash
# Checks infra/ against the AWS provider's own schema with no network and no
# AWS account: `terraform init` from a filesystem mirror of the provider,
# `terraform validate`, and `terraform test` (infra/tests/*.tftest.hcl, which
# plan the configuration with a mocked provider).
#
# The checks run on a copy of infra/ in .local/terraform-check/, so that your
# infra/terraform.tfvars, deploy state and .terraform/ neither influence the
# tests nor get touched by them.
#
#   TF_PROVIDER_MIRROR  mirror root (default /opt/tf-plugins), laid out as
#                       registry.terraform.io/hashicorp/aws/<version>/<os>_<arch>/
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
mirror="${TF_PROVIDER_MIRROR:-/opt/tf-plugins}"
work="$root/.local/terraform-check"

command -v terraform >/dev/null 2>&1 || {
  echo "terraform-check: terraform is not on PATH (https://developer.hashicorp.com/terraform/install)" >&2
  exit 1
}
if ! compgen -G "$mirror/registry.terraform.io/hashicorp/aws/*/*/terraform-provider-aws_*" >/dev/null; then
  echo "terraform-check: no AWS provider in the Terraform filesystem mirror $mirror (set TF_PROVIDER_MIRROR to a mirror holding registry.terraform.io/hashicorp/aws)" >&2
  exit 1
fi

mkdir -p "$work"
# hashicorp providers come from the mirror only; anything else would need the
# network and fails instead of being fetched.
cat >"$work/cli.tfrc" <<TFRC
provider_installation {
  filesystem_mirror {
    path    = "$mirror"
    include = ["registry.terraform.io/hashicorp/*"]
  }
  direct {
    exclude = ["registry.terraform.io/hashicorp/*"]
  }
}
TFRC
export TF_CLI_CONFIG_FILE="$work/cli.tfrc" TF_IN_AUTOMATION=1 TF_INPUT=0 CHECKPOINT_DISABLE=1

config="$work/infra"
rm -rf "$config/tests" "$config"/*.tf "$config"/*.json "$config/.terraform.lock.hcl"
mkdir -p "$config"
cp "$root"/infra/*.tf "$root"/infra/job-definition.json "$root"/infra/.terraform.lock.hcl "$config/"
cp -R "$root/infra/tests" "$config/tests"

tf() { terraform -chdir="$config" "$@"; }
# -lockfile=readonly: the committed lock file must already name the provider
# version and its checksum; a mismatch fails here rather than being rewritten.
tf init -backend=false -lockfile=readonly -no-color >"$work/init.log" 2>&1 || {
  cat "$work/init.log" >&2
  echo "terraform-check: terraform init from $mirror failed" >&2
  exit 1
}
echo "terraform init: $(grep -o -m1 'hashicorp/aws v[0-9.]*' "$work/init.log") from $mirror"
tf validate -no-color
tf test -no-color
