################################################################################
# image-labeler on AWS
#
# One owner per setting: `cargo lambda deploy` owns the dispatcher function
# (code, memory, timeout, environment, role attachment); Terraform owns every
# other resource, including the function's role and log group, and refers to
# the function only by its name, which is known in advance. Wiring that needs
# the function to exist (local.function_exists) is planned only once it does.
#
# Files: storage.tf (bucket, table) · network.tf · batch.tf (ECR, compute,
# queue, job definition, fleet rate) · iam.tf · trigger.tf (S3/SQS/EventBridge
# -> Lambda) · monitoring.tf (dashboard, alarms, notifications)
################################################################################

data "aws_caller_identity" "current" {}

data "aws_partition" "current" {}

# The regions that offer Rekognition, from AWS's public parameters. Without
# it the worker's DetectLabels calls fail (no endpoint), and Rekognition reads
# images only from buckets in its own region, so the stack cannot simply call
# another region: the plan refuses the region instead.
data "aws_ssm_parameters_by_path" "rekognition_regions" {
  path = "/aws/service/global-infrastructure/services/rekognition/regions"

  lifecycle {
    postcondition {
      condition     = contains([for n in self.names : basename(n)], var.region)
      error_message = "Amazon Rekognition is not available in ${var.region}, and the worker labels images with it in the stack's own region. Choose one of: ${join(", ", sort([for n in self.names : basename(n)]))}."
    }
  }
}

# Whether `cargo lambda deploy` has created the dispatcher. Read from the
# account on every plan rather than remembered in a variable, so that a
# function deleted by hand or by an interrupted destroy takes its wiring with
# it instead of failing the next apply.
data "aws_lambda_functions" "all" {}

locals {
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition
  region     = var.region

  # IAM roles and policies and CloudWatch dashboards are named account-wide,
  # not per region: their names carry the region, so that stacks of the same
  # name_prefix in two regions neither collide nor overwrite each other.
  global_name_prefix = "${var.name_prefix}-${local.region}"

  bucket_name         = "${var.name_prefix}-images-${local.account_id}-${local.region}"
  table_name          = "${var.name_prefix}-labels"
  function_name       = "${var.name_prefix}-dispatcher"
  job_queue_name      = "${var.name_prefix}-jobs"
  job_definition_name = "${var.name_prefix}-worker"

  # ARNs built from names, so that policies need not wait for the resources.
  function_arn            = "arn:${local.partition}:lambda:${local.region}:${local.account_id}:function:${local.function_name}"
  job_definition_arn_base = "arn:${local.partition}:batch:${local.region}:${local.account_id}:job-definition/${local.job_definition_name}"

  function_exists = contains(data.aws_lambda_functions.all.function_names, local.function_name)

  queued = var.trigger_mode == "queued"

  # The S3 notification filters: one per watched prefix, or one for the
  # whole bucket. Never suffixes: S3 matches them case-sensitively, so
  # IMG_0001.Jpg would raise no event at all; the dispatcher judges
  # suffixes without regard to case instead.
  notification_prefixes = length(var.image_prefixes) > 0 ? var.image_prefixes : [""]

  # The dispatcher's environment: what `cargo lambda deploy --env-file` sets.
  # Every key is one dispatcher::config reads (tests/tests/infra_contract.rs).
  dispatcher_env = {
    JOB_QUEUE        = aws_batch_job_queue.this.arn
    JOB_DEFINITION   = local.job_definition_name
    TABLE_NAME       = aws_dynamodb_table.results.name
    IMAGES_PER_JOB   = tostring(var.images_per_job)
    MANIFEST_PREFIX  = var.manifest_prefix
    IMAGE_SUFFIXES   = join(",", var.image_suffixes)
    INCLUDE_PREFIXES = join(",", var.image_prefixes)
    MIN_CONFIDENCE   = tostring(local.min_confidence)
  }

  # Labels below this confidence are not stored. Rekognition's answers sit
  # near 100% for what is clearly in a picture; the local model spreads its
  # probability over 1,000 classes, so a right answer can be 30%. The same
  # values as worker::backend::Kind::default_min_confidence (checked by
  # tests/tests/infra_contract.rs).
  default_min_confidence = { rekognition = 70, local = 25, cascade = 25 }
  min_confidence         = var.min_confidence == null ? local.default_min_confidence[var.label_backend] : var.min_confidence
}
