#!/usr/bin/env bash
# Deploys image-labeler to the AWS account of the current credentials, in the
# region set in infra/ (var.region). Safe to run again: every step converges.
#
#   1. terraform apply            bucket, table, queues, ECR, roles, Batch, …
#   2. worker image               docker buildx (linux/arm64) → ECR, immutable tag
#   3. terraform apply            job definition for that image tag
#   4. cargo lambda build/deploy  the dispatcher function (owns code, memory,
#                                 timeout, environment, role attachment)
#   5. terraform apply            wiring that needs the function: S3/SQS/
#                                 EventBridge triggers, permissions
#
# Values the script decides (worker_image_tag, function_deployed,
# dispatcher_timeout_seconds) are kept in infra/deploy.auto.tfvars.json, which
# Terraform loads by itself, so a later manual `terraform plan` in infra/ sees
# the deployed state instead of undoing it. Your own settings go in
# infra/terraform.tfvars.
#
# Requires: terraform >= 1.5, AWS CLI v2, docker with buildx (and QEMU binfmt
# for linux/arm64 on an x86 host), jq, git, and `make setup` (cargo-lambda and
# zig in .venv).
set -euo pipefail

usage() {
  cat <<'EOF'
usage: scripts/deploy.sh [--yes] [--allow-dirty]

  --yes          apply Terraform changes without asking
  --allow-dirty  deploy a worker built from uncommitted changes (tagged
                 <commit>-dirty-<UTC time>); refused otherwise
EOF
}

auto_approve=()
allow_dirty=false
while (($#)); do
  case "$1" in
    -y | --yes) auto_approve=(-auto-approve) ;;
    --allow-dirty) allow_dirty=true ;;
    -h | --help)
      usage
      exit 0
      ;;
    *)
      echo "deploy: unknown option $1" >&2
      usage >&2
      exit 2
      ;;
  esac
  shift
done

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
infra="$root/infra"
deploy_vars="$infra/deploy.auto.tfvars.json"
cd "$root"

need() {
  command -v "$1" >/dev/null 2>&1 || {
    echo "deploy: $1 is required: $2" >&2
    exit 1
  }
}
need terraform "https://developer.hashicorp.com/terraform/install"
need aws "AWS CLI v2 with credentials for the target account"
need docker "Docker with buildx"
need jq "https://jqlang.github.io/jq/"
need git "git"
need cargo "a Rust toolchain (rustup)"
[[ -x $root/.venv/bin/cargo-lambda ]] || {
  echo "deploy: cargo-lambda is required: run 'make setup'" >&2
  exit 1
}

step() { printf '\n==> %s\n' "$*"; }
tf() { terraform -chdir="$infra" "$@"; }
tf_apply() { tf apply -input=false ${auto_approve[@]+"${auto_approve[@]}"}; }
tf_out() { tf output -raw "$1"; }
# cargo-lambda and zig from `make setup`; only for these commands, so that the
# AWS CLI and Python on your PATH stay the ones you use.
cargo_lambda() { PATH="$root/.venv/bin:$PATH" cargo lambda "$@"; }

# Sets one deploy-owned variable in infra/deploy.auto.tfvars.json.
set_deploy_var() {
  local name=$1 json=$2 current='{}'
  [[ -f $deploy_vars ]] && current="$(cat "$deploy_vars")"
  jq --arg name "$name" --argjson value "$json" '.[$name] = $value' <<<"$current" >"$deploy_vars.tmp"
  mv "$deploy_vars.tmp" "$deploy_vars"
}

# The dispatcher's [package.metadata.lambda.deploy] (dispatcher/Cargo.toml):
# the one place its memory and timeout are set.
lambda_setting() {
  cargo metadata --format-version 1 --no-deps --offline 2>/dev/null |
    jq -er --arg key "$1" '.packages[] | select(.name == "dispatcher") | .metadata.lambda.deploy[$key]'
}

account="$(aws sts get-caller-identity --query Account --output text)"
if ! timeout="$(lambda_setting timeout)" || ! memory="$(lambda_setting memory)"; then
  echo "deploy: dispatcher/Cargo.toml needs timeout and memory in [package.metadata.lambda.deploy]" >&2
  exit 1
fi
echo "deploying image-labeler to AWS account $account"

# The worker image tag: the last commit that changed what the image is built
# from, so redeploying an unchanged worker reuses its image.
worker_inputs=(worker core Cargo.toml Cargo.lock ':(glob)*/Cargo.toml')
tag="$(git log -1 --format=%h --abbrev=12 -- "${worker_inputs[@]}")"
if [[ -n "$(git status --porcelain -- "${worker_inputs[@]}")" ]]; then
  if [[ $allow_dirty != true ]]; then
    echo "deploy: the worker has uncommitted changes; commit them or pass --allow-dirty" >&2
    exit 1
  fi
  tag="$tag-dirty-$(date -u +%Y%m%dT%H%M%SZ)"
fi

step "1/5 terraform: shared infrastructure"
tf init -input=false
set_deploy_var dispatcher_timeout_seconds "$timeout"
tf_apply
region="$(tf_out region)"
repository="$(tf_out ecr_repository_url)"

step "2/5 worker image $repository:$tag (linux/arm64)"
repository_name="${repository#*/}"
if aws ecr describe-images --region "$region" --repository-name "$repository_name" \
  --image-ids imageTag="$tag" >/dev/null 2>&1; then
  echo "already in ECR; tags are immutable, not rebuilding"
else
  aws ecr get-login-password --region "$region" |
    docker login --username AWS --password-stdin "${repository%%/*}"
  # One single-platform manifest (no attestations): what Fargate pulls and
  # what the repository's lifecycle policy counts.
  docker buildx build \
    --platform linux/arm64 \
    --provenance=false \
    --sbom=false \
    --file worker/Dockerfile \
    --tag "$repository:$tag" \
    --push \
    .
fi

step "3/5 terraform: job definition for $tag"
set_deploy_var worker_image_tag "\"$tag\""
tf_apply

step "4/5 dispatcher: cargo lambda build and deploy"
cargo_lambda build --profile lambda-zip --arm64 --output-format zip -p dispatcher
env_file="$(mktemp)"
trap 'rm -f "$env_file"' EXIT
tf output -json dispatcher_env | jq -r 'to_entries[] | "\(.key)=\(.value)"' >"$env_file"
cargo_lambda deploy "$(tf_out function_name)" \
  --binary-name dispatcher \
  --region "$region" \
  --iam-role "$(tf_out dispatcher_role_arn)" \
  --env-file "$env_file" \
  --memory "$memory" \
  --timeout "$timeout" \
  --retry-attempts 5 \
  --description "image-labeler dispatcher $(git rev-parse --short=12 HEAD)" \
  --tags "Project=image-labeler,ManagedBy=cargo-lambda"

step "5/5 terraform: triggers and permissions for the function"
set_deploy_var function_deployed true
tf_apply

step "deployed"
cat <<EOF
bucket:  $(tf_out bucket_name)
table:   $(tf_out table_name)
region:  $region

  aws s3 cp photo.jpg s3://$(tf_out bucket_name)/photos/photo.jpg --region $region
  aws dynamodb get-item --region $region --table-name $(tf_out table_name) \\
    --key '{"pk":{"S":"s3://$(tf_out bucket_name)/photos/photo.jpg"},"sk":{"S":"IMAGE"}}'
EOF
