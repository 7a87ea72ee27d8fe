#!/usr/bin/env bash
# Deploys image-labeler to the AWS account of the current credentials, in the
# region set in infra/ (var.region). Safe to run again: every step converges.
#
#   1. terraform plan             shown once; the only confirmation (or --yes,
#                                 AUTO_APPROVE=1) covers every step below
#   2. terraform apply            exactly that plan: bucket, table, queues,
#                                 ECR, roles, network, Batch, and the job
#                                 definition and wiring that can exist already
#   3. worker image               `make image` for arm64 (no Docker daemon):
#                                 the binary cross-compiled with zig over the
#                                 locked Debian 12 packages
#                                 (worker/image/packages.lock), the same image
#                                 `make test` runs; pushed to ECR by skopeo
#                                 under an immutable tag (skipped when there)
#   4. cargo lambda build/deploy  the dispatcher function (owns code, memory,
#                                 timeout, environment, role attachment)
#   5. terraform apply            what waited for steps 3 and 4: the job
#                                 definition for the image tag, and the
#                                 function's triggers and permissions. The
#                                 deploy stops instead if this plan changes
#                                 anything else.
#
# With --plan-only it stops after showing step 1 (`make plan`). Values the
# script decides (worker_image_tag, dispatcher_timeout_seconds) are recorded
# in infra/deploy.auto.tfvars.json once applied, which Terraform loads by
# itself, so a later `terraform plan` in infra/ sees the deployed state
# instead of undoing it. Your own settings go in infra/terraform.tfvars.
#
# Requires: terraform >= 1.9, AWS CLI v2, jq, git, a Rust toolchain, and for a
# deploy also `make setup` (cargo-lambda and zig in .venv) and `make
# image-tools` (umoci, skopeo); the image build downloads Debian packages
# through apt's signed indices from deb.debian.org.
set -euo pipefail

usage() {
  cat <<'USAGE'
usage: scripts/deploy.sh [--yes] [--allow-dirty] [--plan-only]

  --yes          deploy without asking (also AUTO_APPROVE=1)
  --allow-dirty  deploy a worker built from uncommitted changes (tagged
                 <commit>-dirty-<UTC time>); refused otherwise
  --plan-only    show the plan a deploy would ask you to confirm, then stop
USAGE
}

assume_yes=false
[[ ${AUTO_APPROVE:-} == 1 ]] && assume_yes=true
allow_dirty=false
plan_only=false
while (($#)); do
  case "$1" in
    -y | --yes) assume_yes=true ;;
    --allow-dirty) allow_dirty=true ;;
    --plan-only) plan_only=true ;;
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
# shellcheck source=scripts/terraform-init.sh
source "$root/scripts/terraform-init.sh"

need() {
  command -v "$1" >/dev/null 2>&1 || {
    echo "deploy: $1 is required: $2" >&2
    exit 1
  }
}
need terraform "https://developer.hashicorp.com/terraform/install"
need aws "AWS CLI v2 with credentials for the target account"
need jq "https://jqlang.github.io/jq/"
need git "git"
need cargo "a Rust toolchain (rustup)"
if [[ $plan_only != true ]]; then
  need umoci "run 'make image-tools' (Debian's umoci assembles the worker image)"
  need skopeo "run 'make image-tools' (Debian's skopeo pushes the worker image to ECR)"
  [[ -x $root/.venv/bin/cargo-lambda ]] || {
    echo "deploy: cargo-lambda is required: run 'make setup'" >&2
    exit 1
  }
fi

step() { printf '\n==> %s\n' "$*"; }
tf() { terraform -chdir="$infra" "$@"; }
tf_out() { tf output -raw "$1"; }
# cargo-lambda and zig from `make setup`; only for these commands, so that the
# AWS CLI and Python on your PATH stay the ones you use.
cargo_lambda() { PATH="$root/.venv/bin:$PATH" cargo lambda "$@"; }

# Records one deploy-owned variable in infra/deploy.auto.tfvars.json (and
# drops function_deployed, which earlier versions kept there and Terraform
# now reads from the account).
set_deploy_var() {
  local name=$1 json=$2 current='{}'
  [[ -f $deploy_vars ]] && current="$(cat "$deploy_vars")"
  jq --arg name "$name" --argjson value "$json" '.[$name] = $value | del(.function_deployed)' \
    <<<"$current" >"$deploy_vars.tmp"
  mv "$deploy_vars.tmp" "$deploy_vars"
}

# The dispatcher's [package.metadata.lambda.deploy] (dispatcher/Cargo.toml):
# the one place its memory and timeout are set.
lambda_setting() {
  cargo metadata --format-version 1 --no-deps --offline 2>/dev/null |
    jq -er --arg key "$1" '.packages[] | select(.name == "dispatcher") | .metadata.lambda.deploy[$key]'
}

# The resources the step 5 apply may change: those that wait for the image
# (the job definition) or for the function (its triggers and permissions).
# tests/tests/infra_contract.rs keeps this list equal to the resources infra/
# gates on var.worker_image_tag and local.function_exists.
followup_resources=(
  'aws_batch_job_definition.worker[0]'
  'aws_s3_bucket_notification.images[0]'
  'aws_lambda_permission.s3[0]'
  'aws_lambda_event_source_mapping.events[0]'
  'aws_lambda_function_event_invoke_config.dispatcher[0]'
  'aws_lambda_permission.events[0]'
  'aws_cloudwatch_event_target.dispatcher[0]'
  'aws_cloudwatch_event_rule.reconcile[0]'
  'aws_lambda_permission.reconcile[0]'
  'aws_cloudwatch_event_target.reconcile[0]'
  'aws_cloudwatch_metric_alarm.backlog_age'
)

# Addresses of the managed resources a saved plan changes.
planned_changes() {
  tf show -json "$1" |
    jq -r '.resource_changes[]? | select(.mode == "managed" and .change.actions != ["no-op"]) | .address'
}

account="$(aws sts get-caller-identity --query Account --output text)"
if ! timeout="$(lambda_setting timeout)" || ! memory="$(lambda_setting memory)"; then
  echo "deploy: dispatcher/Cargo.toml needs timeout and memory in [package.metadata.lambda.deploy]" >&2
  exit 1
fi

# The worker image tag: the last commit that changed what the image is built
# from, so redeploying an unchanged worker reuses its image.
worker_inputs=(worker core Cargo.toml Cargo.lock ':(glob)*/Cargo.toml' scripts/worker_image.py scripts/build-worker-image.sh)
tag="$(git log -1 --format=%h --abbrev=12 -- "${worker_inputs[@]}")"
if [[ -n "$(git status --porcelain -- "${worker_inputs[@]}")" ]]; then
  if [[ $allow_dirty != true && $plan_only != true ]]; then
    echo "deploy: the worker has uncommitted changes; commit them or pass --allow-dirty" >&2
    exit 1
  fi
  tag="$tag-dirty-$(date -u +%Y%m%dT%H%M%SZ)"
fi

mkdir -p "$root/.local"
plan_file="$(mktemp "$root/.local/deploy-XXXXXX.tfplan")"
env_file=""
trap 'rm -f "$plan_file" ${env_file:+"$env_file"}' EXIT

terraform_init "$infra"

# From the second deploy on, the repository exists and may hold the image.
repository="$(tf output -raw ecr_repository_url 2>/dev/null || true)"
region="$(tf output -raw region 2>/dev/null || true)"
image_in_ecr() {
  [[ -n $repository ]] &&
    aws ecr describe-images --region "$region" --repository-name "${repository#*/}" \
      --image-ids imageTag="$tag" >/dev/null 2>&1
}
plan_vars=(-var "dispatcher_timeout_seconds=$timeout")
image_ready=false
if image_in_ecr; then
  image_ready=true
  plan_vars+=(-var "worker_image_tag=$tag")
fi

step "1/5 terraform plan (AWS account $account)"
tf plan -input=false -out="$plan_file" "${plan_vars[@]}"
if [[ $image_ready == true ]]; then
  image_step="reuses the worker image $tag already in ECR"
else
  image_step="builds the worker image $tag (linux/arm64) and pushes it to ECR"
fi
printf '\nAfter applying this plan, the deploy\n'
printf '  - %s\n' \
  "$image_step" \
  "deploys the dispatcher function with cargo lambda (memory $memory MB, timeout $timeout s)" \
  "applies what waited for the image and the function, and nothing else: the job" \
  "  definition for $tag and the function's triggers and permissions"
if [[ $plan_only == true ]]; then
  exit 0
fi
if [[ $assume_yes != true ]]; then
  read -r -p "Deploy to AWS account $account? Only 'yes' is accepted: " answer
  if [[ $answer != yes ]]; then
    echo "deploy: not confirmed; nothing changed" >&2
    exit 1
  fi
fi

step "2/5 terraform apply"
tf apply -input=false "$plan_file"
set_deploy_var dispatcher_timeout_seconds "$timeout"
if [[ $image_ready == true ]]; then
  set_deploy_var worker_image_tag "\"$tag\""
fi
region="$(tf_out region)"
repository="$(tf_out ecr_repository_url)"
# A dispatcher role step 2 replaced (renamed, as region-qualified names did)
# is already deleted: move an existing function to the new one now rather
# than after the image build of step 3.
function_name="$(tf_out function_name)"
role_arn="$(tf_out dispatcher_role_arn)"
current_role="$(aws lambda get-function-configuration --region "$region" \
  --function-name "$function_name" --query Role --output text 2>/dev/null || true)"
if [[ -n $current_role && $current_role != "$role_arn" ]]; then
  echo "the dispatcher's role was replaced: moving $function_name to $role_arn"
  aws lambda update-function-configuration --region "$region" \
    --function-name "$function_name" --role "$role_arn" >/dev/null
  aws lambda wait function-updated-v2 --region "$region" --function-name "$function_name"
fi

step "3/5 worker image $repository:$tag (linux/arm64)"
if image_in_ecr; then
  echo "already in ECR; tags are immutable, not rebuilding"
else
  # The image `make image` builds and `make test` runs under qemu: the
  # worker cross-compiled with zig, over the locked Debian packages.
  scripts/build-worker-image.sh arm64
  # One single-platform OCI manifest, copied as built (same digest): what
  # Fargate pulls and what the repository's lifecycle policy counts.
  aws ecr get-login-password --region "$region" |
    skopeo login --username AWS --password-stdin "${repository%%/*}"
  skopeo copy --quiet oci:target/worker-image/oci:arm64 "docker://$repository:$tag"
fi

step "4/5 dispatcher: cargo lambda build and deploy"
cargo_lambda build --profile lambda-zip --arm64 --output-format zip -p dispatcher
env_file="$(mktemp)"
tf output -json dispatcher_env | jq -r 'to_entries[] | "\(.key)=\(.value)"' >"$env_file"
cargo_lambda deploy "$(tf_out function_name)" \
  --binary-name dispatcher \
  --region "$region" \
  --iam-role "$(tf_out dispatcher_role_arn)" \
  --env-file "$env_file" \
  --memory "$memory" \
  --timeout "$timeout" \
  --tags "Project=image-labeler,ManagedBy=cargo-lambda"

step "5/5 terraform apply: job definition for $tag, triggers and permissions"
tf plan -input=false -out="$plan_file" -var "dispatcher_timeout_seconds=$timeout" -var "worker_image_tag=$tag" >/dev/null
unexpected="$(planned_changes "$plan_file" | grep -vxF -f <(printf '%s\n' "${followup_resources[@]}") || true)"
if [[ -n $unexpected ]]; then
  echo "deploy: this apply would also change resources that were not in the confirmed plan:" >&2
  sed 's/^/  /' <<<"$unexpected" >&2
  echo "deploy: stopped; run the deploy again to review them" >&2
  exit 1
fi
tf apply -input=false "$plan_file"
set_deploy_var worker_image_tag "\"$tag\""

step "deployed"
bucket="$(tf_out bucket_name)"
table="$(tf_out table_name)"
printf '%s\n' \
  "bucket:  $bucket" \
  "table:   $table" \
  "region:  $region" \
  "" \
  "  aws s3 cp photo.jpg s3://$bucket/photos/photo.jpg --region $region" \
  "  aws dynamodb get-item --region $region --table-name $table \\" \
  "    --key '{\"pk\":{\"S\":\"s3://$bucket/photos/photo.jpg\"},\"sk\":{\"S\":\"IMAGE\"}}'"
