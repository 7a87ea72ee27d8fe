#!/usr/bin/env bash
# Removes everything scripts/deploy.sh created: the dispatcher function, every
# object (all versions) in the images bucket, the worker images, the results
# table and the rest of the Terraform stack. Asks for the bucket's name as
# confirmation unless --yes is given. Labels and images are gone afterwards.
# Safe to run again after a destroy that stopped halfway: names are read from
# what the Terraform state still holds (tested by scripts/tests/destroy-test.sh).
#
# Requires: terraform, AWS CLI v2, jq.
set -euo pipefail

usage() {
  cat <<'EOF'
usage: scripts/destroy.sh [--yes]

  --yes  do not ask for confirmation
EOF
}

assume_yes=false
while (($#)); do
  case "$1" in
    -y | --yes) assume_yes=true ;;
    -h | --help)
      usage
      exit 0
      ;;
    *)
      echo "destroy: unknown option $1" >&2
      usage >&2
      exit 2
      ;;
  esac
  shift
done

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
infra="$root/infra"
# shellcheck source=scripts/terraform-init.sh
source "$root/scripts/terraform-init.sh"

need() {
  command -v "$1" >/dev/null 2>&1 || {
    echo "destroy: $1 is required: $2" >&2
    exit 1
  }
}
need terraform "https://developer.hashicorp.com/terraform/install"
need aws "AWS CLI v2 with credentials for the target account"
need jq "https://jqlang.github.io/jq/"

step() { printf '\n==> %s\n' "$*"; }
tf() { terraform -chdir="$infra" "$@"; }

terraform_init "$infra"

# Names come from the state, not from `terraform output` alone: a destroy that
# stopped halfway has already removed the outputs but left resources behind.
# Outputs first; else the stack's name (the Stack tag every resource carries)
# and region (from any ARN), from which infra/main.tf derives every name; else
# infra/terraform.tfvars.
state="$(tf show -json 2>/dev/null || true)"
[[ -n $state ]] || state='{}'
resources="$(jq '[.values.root_module.resources[]? | select(.mode == "managed")] | length' <<<"$state")"
if [[ "$(jq '.values.outputs // {} | length' <<<"$state")" -eq 0 && $resources -eq 0 ]]; then
  echo "destroy: no deployed stack in infra/ (nothing in the Terraform state); nothing to do" >&2
  exit 1
fi
output() { jq -r --arg name "$1" '.values.outputs[$name].value // empty' <<<"$state"; }
tfvar() {
  local file
  for file in "$infra/terraform.tfvars" "$infra"/*.auto.tfvars; do
    [[ -f $file ]] || continue
    sed -nE "s/^[[:space:]]*$1[[:space:]]*=[[:space:]]*\"([^\"]*)\".*/\1/p" "$file" | tail -1
  done | tail -1
}

stack="$(output function_name)"
stack="${stack%-dispatcher}"
[[ -n $stack ]] || stack="$(jq -r '[.values.root_module.resources[]?.values.tags_all.Stack? // empty] | first // empty' <<<"$state")"
[[ -n $stack ]] || stack="$(tfvar name_prefix)"
region="$(output region)"
[[ -n $region ]] || region="$(jq -r '[.values.root_module.resources[]?.values.arn? // empty
  | capture("^arn:[^:]+:[^:]+:(?<r>[a-z0-9-]+):").r] | first // empty' <<<"$state")"
[[ -n $region ]] || region="$(tfvar region)"
if [[ -z $stack || -z $region ]]; then
  missing="$([[ -n $stack ]] || printf 'name_prefix ')$([[ -n $region ]] || printf 'region')"
  echo "destroy: infra/ still has $resources resources in its Terraform state, but neither its outputs, nor those resources, nor infra/terraform.tfvars give the stack's ${missing% }; nothing deleted." >&2
  echo "destroy: review them with 'terraform -chdir=infra state list' and remove them with 'terraform -chdir=infra destroy'." >&2
  exit 1
fi

account="$(aws sts get-caller-identity --query Account --output text)"
bucket="$(output bucket_name)"
bucket="${bucket:-$stack-images-$account-$region}"
table="$(output table_name)"
table="${table:-$stack-labels}"
function_name="$(output function_name)"
function_name="${function_name:-$stack-dispatcher}"
repository="$(output ecr_repository_url)"
repository_name="${repository#*/}"
repository_name="${repository_name:-$stack-worker}"
backlog_alarm="$stack-backlog-age"

cat <<EOF
This permanently deletes, in AWS account $account, region $region:
  - the Lambda function  $function_name
  - every object and version in  s3://$bucket
  - every image in the ECR repository  $repository_name
  - the DynamoDB table  $table  (all labels)
  - the rest of the Terraform stack in infra/
EOF
if [[ $assume_yes != true ]]; then
  read -r -p "Type the bucket name to confirm: " answer || answer=""
  if [[ $answer != "$bucket" ]]; then
    echo "destroy: not confirmed; nothing deleted" >&2
    exit 1
  fi
fi

step "backlog alarm notifications off (without the function no reconciler pass reports)"
aws cloudwatch disable-alarm-actions --region "$region" --alarm-names "$backlog_alarm" >/dev/null 2>&1 || true
echo "$backlog_alarm notifies no one"

step "dispatcher function (first, so that emptying the bucket triggers nothing)"
if aws lambda get-function --region "$region" --function-name "$function_name" >/dev/null 2>&1; then
  aws lambda delete-function --region "$region" --function-name "$function_name"
  echo "deleted $function_name"
else
  echo "$function_name does not exist"
fi

step "emptying s3://$bucket (every version and delete marker)"
if aws s3api head-bucket --bucket "$bucket" --region "$region" >/dev/null 2>&1; then
  while :; do
    batch="$(aws s3api list-object-versions --region "$region" --bucket "$bucket" \
      --max-items 500 --output json |
      jq -c '{Objects: ([(.Versions // [])[], (.DeleteMarkers // [])[]]
                        | map({Key, VersionId})), Quiet: true}')"
    [[ "$(jq '.Objects | length' <<<"$batch")" -eq 0 ]] && break
    aws s3api delete-objects --region "$region" --bucket "$bucket" --delete "$batch" >/dev/null
    echo "deleted $(jq '.Objects | length' <<<"$batch") object versions"
  done
else
  echo "bucket does not exist"
fi

step "worker images in $repository_name"
while :; do
  ids="$(aws ecr list-images --region "$region" --repository-name "$repository_name" \
    --max-items 100 --query imageIds --output json 2>/dev/null || echo '[]')"
  [[ "$(jq 'length' <<<"$ids")" -eq 0 ]] && break
  aws ecr batch-delete-image --region "$region" --repository-name "$repository_name" \
    --image-ids "$ids" >/dev/null
  echo "deleted $(jq 'length' <<<"$ids") images"
done

step "table deletion protection off"
if aws dynamodb describe-table --region "$region" --table-name "$table" >/dev/null 2>&1; then
  aws dynamodb update-table --region "$region" --table-name "$table" \
    --no-deletion-protection-enabled >/dev/null
  echo "$table can be deleted"
fi

step "terraform destroy"
tf destroy -input=false -auto-approve -var table_deletion_protection=false
rm -f "$infra/deploy.auto.tfvars.json"
echo "image-labeler removed from $account/$region"
