#!/usr/bin/env bash
# Removes everything scripts/deploy.sh created: the dispatcher function, every
# object (all versions) in the images bucket, the worker images, the results
# table and the rest of the Terraform stack. Asks for the bucket's name as
# confirmation unless --yes is given. Labels and images are gone afterwards.
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
if ! tf output -raw bucket_name >/dev/null 2>&1; then
  echo "destroy: no deployed stack in infra/ (no Terraform outputs); nothing to do" >&2
  exit 1
fi
region="$(tf output -raw region)"
bucket="$(tf output -raw bucket_name)"
table="$(tf output -raw table_name)"
function_name="$(tf output -raw function_name)"
repository="$(tf output -raw ecr_repository_url)"
repository_name="${repository#*/}"
account="$(aws sts get-caller-identity --query Account --output text)"

cat <<EOF
This permanently deletes, in AWS account $account, region $region:
  - the Lambda function  $function_name
  - every object and version in  s3://$bucket
  - every image in the ECR repository  $repository_name
  - the DynamoDB table  $table  (all labels)
  - the rest of the Terraform stack in infra/
EOF
if [[ $assume_yes != true ]]; then
  read -r -p "Type the bucket name to confirm: " answer
  if [[ $answer != "$bucket" ]]; then
    echo "destroy: not confirmed; nothing deleted" >&2
    exit 1
  fi
fi

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
