#!/usr/bin/env bash
# Offline tests of scripts/destroy.sh: stub `terraform` and `aws` commands on
# PATH play a stack in given states, and each case checks what the script
# asks, deletes and refuses. The script runs from a copy of scripts/ beside an
# empty infra/, so nothing in the working tree is touched.
#
#   scripts/tests/destroy-test.sh        (needs bash and jq only)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
command -v jq >/dev/null 2>&1 || {
  echo "destroy-test: jq is required" >&2
  exit 1
}

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/bin" "$tmp/stack/scripts" "$tmp/stack/infra"
cp "$root/scripts/destroy.sh" "$root/scripts/terraform-init.sh" "$tmp/stack/scripts/"

# terraform: the state is $STUB_STATE (what `terraform show -json` prints);
# `output -raw` answers from its outputs and fails like Terraform for a
# missing one; every call is logged.
cat >"$tmp/bin/terraform" <<'STUB'
#!/usr/bin/env bash
echo "terraform $*" >>"$STUB_LOG"
[[ $1 == -chdir=* ]] && shift
case "$1" in
  version) echo '{"platform":"linux_amd64"}' ;;
  init | destroy | providers) ;;
  show) cat "$STUB_STATE" ;;
  output)
    name="${*: -1}"
    jq -er --arg n "$name" '.values.outputs[$n].value' "$STUB_STATE" 2>/dev/null || {
      echo "Error: Output \"$name\" not found" >&2
      exit 1
    }
    ;;
  *) exit 1 ;;
esac
STUB

# aws: an account whose resources are all gone already; every call is logged.
cat >"$tmp/bin/aws" <<'STUB'
#!/usr/bin/env bash
echo "aws $*" >>"$STUB_LOG"
case "$1 $2" in
  "sts get-caller-identity") echo 123456789012 ;;
  "ecr list-images") echo '[]' ;;
  "cloudwatch disable-alarm-actions") ;;
  *) exit 254 ;;
esac
STUB
chmod +x "$tmp/bin/terraform" "$tmp/bin/aws"

failures=0
# run_case <name> <state json> <stdin> [destroy.sh args...]: sets $status,
# $out (stdout and stderr) and $log (the stub calls).
run_case() {
  local name=$1 state=$2 input=$3
  shift 3
  printf '%s' "$state" >"$tmp/state.json"
  : >"$tmp/calls.log"
  status=0
  out="$(printf '%s' "$input" | STUB_STATE="$tmp/state.json" STUB_LOG="$tmp/calls.log" \
    PATH="$tmp/bin:$PATH" bash "$tmp/stack/scripts/destroy.sh" "$@" 2>&1)" || status=$?
  log="$(cat "$tmp/calls.log")"
  current=$name
  failures_before=$failures
}
check() {
  if ! eval "$1"; then
    echo "FAIL $current: $2" >&2
    printf '  exit %s\n  output:\n%s\n  calls:\n%s\n' "$status" "$(sed 's/^/    /' <<<"$out")" "$(sed 's/^/    /' <<<"$log")" >&2
    failures=$((failures + 1))
  fi
}
pass() { ((failures > failures_before)) || echo "ok   $current"; }

outputs_state='{"format_version":"1.0","values":{"outputs":{
  "region":{"value":"eu-west-1"},
  "bucket_name":{"value":"demo-images-123456789012-eu-west-1"},
  "table_name":{"value":"demo-labels"},
  "function_name":{"value":"demo-dispatcher"},
  "ecr_repository_url":{"value":"123456789012.dkr.ecr.eu-west-1.amazonaws.com/demo-worker"}},
  "root_module":{"resources":[{"mode":"managed","type":"aws_sqs_queue","name":"dlq",
    "values":{"arn":"arn:aws:sqs:eu-west-1:123456789012:demo-dispatch-failures","tags_all":{"Stack":"demo"}}}]}}}'

# What a destroy that stopped halfway leaves: resources, no outputs.
partial_state='{"format_version":"1.0","values":{"root_module":{"resources":[
  {"mode":"data","type":"aws_partition","name":"current","values":{"partition":"aws"}},
  {"mode":"managed","type":"aws_iam_role","name":"job","values":{"arn":"arn:aws:iam::123456789012:role/demo-eu-west-1-worker-job","tags_all":{"Stack":"demo"}}},
  {"mode":"managed","type":"aws_sqs_queue","name":"dlq","values":{"arn":"arn:aws:sqs:eu-west-1:123456789012:demo-dispatch-failures","tags_all":{"Stack":"demo"}}}]}}}'

# Resources that carry neither tags nor a regional ARN.
anonymous_state='{"format_version":"1.0","values":{"root_module":{"resources":[
  {"mode":"managed","type":"aws_s3_bucket_notification","name":"images","values":{"id":"x"}}]}}}'

run_case "a_deployed_stack_is_confirmed_with_its_bucket_name_and_destroyed" "$outputs_state" $'demo-images-123456789012-eu-west-1\n'
check '[[ $status -eq 0 ]]' "a confirmed destroy must succeed"
check 'grep -q "^terraform -chdir=.* destroy " <<<"$log"' "terraform destroy must run"
check 'grep -q "s3://demo-images-123456789012-eu-west-1" <<<"$out"' "the bucket from the outputs must be named"
pass

run_case "after_a_partial_destroy_the_names_come_from_the_state_and_the_bucket_name_is_asked" "$partial_state" $'demo-images-123456789012-eu-west-1\n'
check '[[ $status -eq 0 ]]' "re-running after a partial destroy must finish it"
check 'grep -q "region eu-west-1" <<<"$out" && grep -q "s3://demo-images-123456789012-eu-west-1" <<<"$out" && grep -q "function  demo-dispatcher" <<<"$out" && grep -q "table  demo-labels" <<<"$out"' "every name must be derived from the state's Stack tag and ARNs"
check 'grep -q "lambda get-function --region eu-west-1 --function-name demo-dispatcher" <<<"$log" && grep -q "ecr list-images --region eu-west-1 --repository-name demo-worker" <<<"$log"' "the AWS calls must use the derived names"
check 'grep -q "cloudwatch disable-alarm-actions --region eu-west-1 --alarm-names demo-backlog-age" <<<"$log"' "the backlog alarm must stop notifying before the function goes"
check 'grep -q "^terraform -chdir=.* destroy " <<<"$log"' "terraform destroy must run"
pass

run_case "after_a_partial_destroy_an_empty_answer_confirms_nothing" "$partial_state" $'\n'
check '[[ $status -ne 0 ]]' "an empty answer must not confirm"
check '! grep -q " destroy " <<<"$log" && ! grep -q "delete" <<<"$log"' "nothing may be deleted"
check 'grep -q "not confirmed" <<<"$out"' "the refusal must say so"
pass

run_case "a_state_naming_no_stack_or_region_is_refused_before_asking_anything" "$anonymous_state" $'\n'
check '[[ $status -ne 0 ]]' "an unnamed stack must be refused"
check 'grep -q "name_prefix region" <<<"$out" && grep -q "terraform -chdir=infra destroy" <<<"$out"' "the refusal must say what is missing and what to do"
check '! grep -q "This permanently deletes" <<<"$out" && ! grep -q "^aws " <<<"$log" && ! grep -q " destroy " <<<"$log"' "nothing may be asked, called or deleted"
pass

printf 'name_prefix = "tfv"\nregion      = "eu-central-1"\n' >"$tmp/stack/infra/terraform.tfvars"
run_case "names_missing_from_the_state_come_from_terraform_tfvars" "$anonymous_state" $'tfv-images-123456789012-eu-central-1\n'
check '[[ $status -eq 0 ]] && grep -q "s3://tfv-images-123456789012-eu-central-1" <<<"$out"' "name_prefix and region must come from infra/terraform.tfvars"
pass
rm "$tmp/stack/infra/terraform.tfvars"

run_case "an_empty_state_has_nothing_to_destroy" '{"format_version":"1.0"}' ''
check '[[ $status -ne 0 ]] && grep -q "nothing to do" <<<"$out"' "an empty state must be reported, not destroyed"
check '! grep -q " destroy " <<<"$log" && ! grep -q "^aws " <<<"$log"' "nothing may be called"
pass

if ((failures > 0)); then
  echo "destroy-test: $failures failed checks" >&2
  exit 1
fi
echo "destroy-test: all cases passed"
